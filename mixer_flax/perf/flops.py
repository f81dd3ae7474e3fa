"""The one FLOP counter: analytic matmul FLOPs of Mixer and XLA's cost-analysis FLOPs.

Used by `paper/throughput.py` (Tables 2/3 throughput) and `perf/benchmark.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mixer_flax import models
from mixer_flax.models import formulations


def analytic_flops(*, variant: str, image_size: int, num_classes: int,
                   **overrides: Any) -> dict[str, float]:
  """Matmul FLOPs (2 per multiply-add) of one image's forward pass, by part.

  Stem `2 S (P^2 3) C`, per block token mixing `4 C S D_S` and channel mixing
  `4 S C D_C`, head `2 C K`. LayerNorm, GELU, bias and residual adds are left out.

  Returns:
    `{'stem', 'token_mixing', 'channel_mixing', 'head', 'total'}`. With
    S = (image_size / P)^2 tokens, token mixing grows as S x D_S (as S^2 when
    D_S is scaled with S, as in high-resolution fine-tuning), the rest as S.
  """
  cfg = models.get_config(variant).to_dict()
  cfg.update({k: v for k, v in overrides.items() if v is not None})
  p, c, blocks = cfg['patch_size'], cfg['hidden_dim'], cfg['num_blocks']
  s = (image_size // p) ** 2
  parts = {
      'stem': 2.0 * s * p * p * 3 * c,
      'token_mixing': blocks * 2 * (2.0 * c * s * cfg['tokens_mlp_dim']),
      'channel_mixing': blocks * 2 * (2.0 * s * c * cfg['channels_mlp_dim']),
      'head': 2.0 * c * (num_classes or 0),
  }
  parts['total'] = sum(parts.values())
  return parts


def cost_flops(compiled: Any) -> float | None:
  """FLOPs of XLA's cost analysis of a lowered or compiled computation (None if unknown)."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops'])
  except Exception:  # noqa: BLE001
    return None


def grad_cost_flops(model: Any, params: Any, images: jax.Array, labels: jax.Array
                    ) -> float | None:
  """XLA's (pre-compilation) FLOP estimate of one loss gradient; params may be replicated."""
  shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), params)

  plain = formulations.pinned(model)  # unchunked: XLA counts a loop body once

  def loss(p, x, y):
    logits = plain.apply({'params': p}, x)
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))

  try:
    return cost_flops(jax.jit(jax.grad(loss)).lower(shapes, images, labels))
  except Exception:  # noqa: BLE001
    return None
