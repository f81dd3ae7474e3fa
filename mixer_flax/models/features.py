"""Intermediate features of an `MlpMixer`: stem tokens, every block's output, pre-logits.

    feats = features(model, {'params': params}, images)
    feats['stem']           # (N, S, C) patch embeddings, tokens row-major over the (H/P, W/P) grid
    feats['MixerBlock_3']   # (N, S, C) output of block 3 (residual stream)
    feats['pre_logits']     # (N, C) = mean over tokens of pre_head_layer_norm(last block)
    feats['logits']         # (N, num_classes) (absent for a headless model)
    grid = feats['MixerBlock_3'].reshape(N, H // P, W // P, C)  # as a feature map

Built on flax's `capture_intermediates`, outside the model's `__call__`: the
default forward pass does no extra work. jit-able (`jax.jit(features, static_argnums=0)`).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import traverse_util

__all__ = ['features']


def _wanted(module: Any, method_name: str) -> bool:
  """The outputs of the stem and of each Mixer block (direct children of the model)."""
  name = module.name if isinstance(module.name, str) else ''
  return method_name == '__call__' and (name == 'stem' or name.startswith('MixerBlock_'))


def features(model: Any, variables: dict[str, Any], images: jax.Array, *,
             train: bool = False, rngs: dict[str, jax.Array] | None = None) -> dict[str, jax.Array]:
  """Runs `model` on `images (N, H, W, 3)` and returns its features by name (module doc).

  Args:
    model: an `MlpMixer`.
    variables: `{'params': params}`.
    images: float images in [-1, 1].
    train: training mode (stochastic depth / dropout need a 'dropout' rng in `rngs`).
    rngs: random keys for training mode.

  Returns:
    dict with 'stem', 'MixerBlock_0' ... 'MixerBlock_{L-1}' (each `(N, S, C)`, the
    computation dtype), 'pre_logits' `(N, C)` float32 and 'logits' when the model has a head.
  """
  # The 'nsc' formulation (same function) gives captured outputs (N, S, C) on every backend,
  # and an explicit formulation never runs its blocks in chunks (inside lax.map, uncaptured).
  model = model.clone(formulation='nsc')
  (logits, pre_logits), state = model.apply(
      variables, images, train=train, return_prelogits=True, rngs=rngs,
      capture_intermediates=_wanted, mutable=['intermediates'])
  captured = {path[0]: value[0] if isinstance(value, tuple) else value  # {name: {'__call__': (y,)}}
              for path, value in traverse_util.flatten_dict(state['intermediates']).items()}
  out = {'stem': captured['stem']}
  out.update({f'MixerBlock_{i}': captured[f'MixerBlock_{i}'] for i in range(model.num_blocks)})
  out['pre_logits'] = pre_logits
  if model.num_classes:
    out['logits'] = logits
  return out
