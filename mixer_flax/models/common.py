"""What the paper's module (mixer.py) and its formulations (formulations.py) share."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

Dtype = Any  # what flax modules accept as `dtype`
LN_EPS = 1e-6  # flax's LayerNorm default, which the reference uses
PAPER = 'paper'  # `MlpMixer.formulation` that runs the paper module's own code (mixer.py)


def drop_path(module: nn.Module, y: jax.Array, rate: float, *, train: bool,
              batch_axis: int = 0) -> jax.Array:
  """Stochastic depth of a residual branch `y`, as big_vision's `mlp_mixer.py` (ours).

  Each example's branch is multiplied by 1 - Bernoulli(rate): kept as is or zeroed, never
  rescaled by 1 / (1 - rate); inference multiplies by nothing.
  """
  if not train or not rate:
    return y
  n = y.shape[batch_axis]
  keep = 1.0 - jax.random.bernoulli(module.make_rng('dropout'), rate, (n,))
  return y * keep.astype(y.dtype).reshape([n if a == batch_axis else 1 for a in range(y.ndim)])
