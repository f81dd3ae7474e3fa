"""Describes a Mixer checkpoint from its parameter shapes alone.

Used by `scripts/inspect_checkpoint.py` and to rebuild the model of an `.npz`
(`infer_architecture`). Works on arrays or on shape/dtype
structs (`jax.eval_shape`), so it never needs the values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixer_flax import models
from mixer_flax.checkpoint.finetune import canonical_order
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.tree import CheckpointError, flatten

__all__ = ['describe', 'format_description', 'match_variant', 'infer_architecture']

_BLOCK = re.compile(r'^MixerBlock_(\d+)/')


def match_variant(*, patch: int, hidden: int, depth: int, channels_mlp: int) -> str | None:
  """Name of the `MODEL_CONFIGS` entry with these patch/width/depth/D_C (D_S may differ)."""
  for name, cfg in models.MODEL_CONFIGS.items():
    if (cfg.patch_size, cfg.hidden_dim, cfg.num_blocks, cfg.channels_mlp_dim) == (
        patch, hidden, depth, channels_mlp):
      return name
  return None


def _guess_variant(*, patch: int, hidden: int, depth: int, tokens_mlp: int, channels_mlp: int,
                   grid_factor: int | None) -> str:
  """Name of the `MODEL_CONFIGS` entry the shapes match, or a description."""
  name = match_variant(patch=patch, hidden=hidden, depth=depth, channels_mlp=channels_mlp)
  if name is None:
    return (f'unknown (patch_size={patch}, hidden_dim={hidden}, num_blocks={depth}, '
            f'tokens_mlp_dim={tokens_mlp}, channels_mlp_dim={channels_mlp})')
  base = models.MODEL_CONFIGS[name].tokens_mlp_dim
  if tokens_mlp == base:
    return name
  if grid_factor and tokens_mlp == grid_factor ** 2 * base:
    return f'{name} (token MLP widened {grid_factor ** 2}x for {grid_factor}x the resolution)'
  return f'{name} (with tokens_mlp_dim={tokens_mlp})'


def expected_shapes(*, patch: int, channels: int, hidden: int, tokens: int, tokens_mlp: int,
                    channels_mlp: int, num_blocks: int,
                    num_classes: int | None) -> dict[str, tuple[int, ...]]:
  """Every official key and its shape for these dimensions (the layout of `models.MlpMixer`)."""
  c = hidden
  block = {'LayerNorm_0/scale': (c,), 'LayerNorm_0/bias': (c,),
           'token_mixing/Dense_0/kernel': (tokens, tokens_mlp),
           'token_mixing/Dense_0/bias': (tokens_mlp,),
           'token_mixing/Dense_1/kernel': (tokens_mlp, tokens),
           'token_mixing/Dense_1/bias': (tokens,),
           'LayerNorm_1/scale': (c,), 'LayerNorm_1/bias': (c,),
           'channel_mixing/Dense_0/kernel': (c, channels_mlp),
           'channel_mixing/Dense_0/bias': (channels_mlp,),
           'channel_mixing/Dense_1/kernel': (channels_mlp, c), 'channel_mixing/Dense_1/bias': (c,)}
  shapes = {'stem/kernel': (patch, patch, channels, c), 'stem/bias': (c,),
            'pre_head_layer_norm/scale': (c,), 'pre_head_layer_norm/bias': (c,)}
  for i in range(num_blocks):
    shapes.update({f'MixerBlock_{i}/{k}': v for k, v in block.items()})
  if num_classes is not None:
    shapes.update({'head/kernel': (c, num_classes), 'head/bias': (num_classes,)})
  return shapes


def _dims_source(key: str) -> str:
  """The keys the expected shape of `key` was derived from (for error messages)."""
  if '/token_mixing/' in key:
    return 'MixerBlock_0/token_mixing/Dense_0/kernel'
  if '/channel_mixing/' in key:
    return 'stem/kernel and MixerBlock_0/channel_mixing/Dense_0/kernel'
  return 'stem/kernel and head/kernel' if key.startswith('head/') else 'stem/kernel'


def describe(params: Mapping[str, Any], *, source: str = '<params>',
             pretrained_tokens: int | None = None) -> dict[str, Any]:
  """Summarises a parameter tree.

  Args:
    params: nested (or flat '/'-joined) params; leaves need `.shape`, `.dtype`.
    source: name used in error messages.
    pretrained_tokens: optional token count of the original pre-training; used
      to recognise a token MLP widened for a higher resolution. By default the
      variant's 224 px token count is assumed.

  Returns:
    dict with 'variant', 'patch_size', 'hidden_dim', 'num_blocks', 'num_tokens',
    'tokens_mlp_dim', 'channels_mlp_dim', 'image_size' (None if the token grid is
    not square), 'num_classes' (None without head), 'num_params', 'dtype'.
  """
  flat = convert_legacy(flatten(params), source=source)
  try:
    patch, _, _, hidden = flat['stem/kernel'].shape
    blocks = sorted({int(m.group(1)) for k in flat if (m := _BLOCK.match(k))})
    tokens, tokens_mlp = flat['MixerBlock_0/token_mixing/Dense_0/kernel'].shape
    channels_mlp = flat['MixerBlock_0/channel_mixing/Dense_0/kernel'].shape[1]
  except KeyError as e:
    raise CheckpointError(f'{source}: parameter {e} is missing; not a complete Mixer '
                          'checkpoint.') from e
  if blocks != list(range(len(blocks))):
    raise CheckpointError(f'{source}: MixerBlock indices {blocks} are not 0..N-1.')
  expected = expected_shapes(
      patch=patch, channels=flat['stem/kernel'].shape[2], hidden=hidden, tokens=tokens,
      tokens_mlp=tokens_mlp, channels_mlp=channels_mlp, num_blocks=len(blocks),
      num_classes=flat['head/kernel'].shape[-1] if 'head/kernel' in flat else None)
  for key in sorted(expected, key=canonical_order):  # Every block must agree with the first.
    got = tuple(flat[key].shape) if key in flat else 'missing'
    if got != expected[key]:
      raise CheckpointError(
          f'{source}: parameter {key!r} has shape {got} but {_dims_source(key)} give '
          f'{expected[key]}; the parameters of this file do not fit together (corrupt or '
          'hand-edited checkpoint).')
  side = math.isqrt(tokens)
  image_size = side * patch if side * side == tokens else None
  base = pretrained_tokens
  if base is None:
    base = (224 // patch) ** 2
  grid_factor = None
  base_side = math.isqrt(base)
  if image_size and base_side and side % base_side == 0:
    grid_factor = side // base_side
  dtypes = sorted({str(np.dtype(v.dtype)) for v in flat.values()})
  return {
      'variant': _guess_variant(patch=patch, hidden=hidden, depth=len(blocks),
                                tokens_mlp=tokens_mlp, channels_mlp=channels_mlp,
                                grid_factor=grid_factor),
      'patch_size': patch, 'hidden_dim': hidden, 'num_blocks': len(blocks),
      'num_tokens': tokens, 'tokens_mlp_dim': tokens_mlp, 'channels_mlp_dim': channels_mlp,
      'image_size': image_size,
      'num_classes': flat['head/bias'].shape[0] if 'head/bias' in flat else None,
      'num_params': int(sum(math.prod(v.shape) for v in flat.values())),
      'dtype': ', '.join(dtypes),
  }


def format_description(info: Mapping[str, Any]) -> str:
  """Human-readable lines for `describe`'s result."""
  res = f'{info["image_size"]} px' if info['image_size'] else 'non-square token grid'
  head = info['num_classes'] if info['num_classes'] is not None else 'none (pre-logits)'
  return '\n'.join([
      f'variant:      {info["variant"]}',
      f'resolution:   {res} ({info["num_tokens"]} tokens of {info["patch_size"]}x'
      f'{info["patch_size"]} px)',
      f'width/depth:  hidden_dim={info["hidden_dim"]}, num_blocks={info["num_blocks"]}, '
      f'tokens_mlp_dim={info["tokens_mlp_dim"]}, channels_mlp_dim={info["channels_mlp_dim"]}',
      f'head classes: {head}',
      f'parameters:   {info["num_params"]:,}',
      f'dtype:        {info["dtype"]}',
  ])


class ResolutionMismatch(ValueError):
  """An image size whose token grid is not the checkpoint's."""


def infer_architecture(params: dict[str, Any], *, image_size: int | None = None,
                       source: str = '<params>') -> dict[str, Any]:
  """Finds the `MODEL_CONFIGS` variant whose shapes match a parameter tree.

  Args:
    params: nested MlpMixer parameters (e.g. from `checkpoint.load_npz`).
    image_size: input side; default: the size at which the variant has exactly
      the checkpoint's token count.
    source: name used in error messages (the file).

  Returns:
    dict(model_name, num_classes, image_size, overrides) for `create_model`.
  """
  info = describe(params, source=source)
  patch, num_tokens, d_s = info['patch_size'], info['num_tokens'], info['tokens_mlp_dim']
  name = match_variant(patch=patch, hidden=info['hidden_dim'], depth=info['num_blocks'],
                       channels_mlp=info['channels_mlp_dim'])
  if name is None:
    raise ValueError(f'No known Mixer variant has patch {patch}, C={info["hidden_dim"]}, '
                     f'{info["num_blocks"]} blocks, D_C={info["channels_mlp_dim"]}; known: '
                     f'{", ".join(models.MODEL_CONFIGS)}.')
  side = round(math.sqrt(num_tokens)) * patch
  if image_size is not None and (image_size // patch) ** 2 != num_tokens:
    raise ResolutionMismatch(
        f'{source} was trained at {side} px ({num_tokens} tokens of patch {patch}), but '
        f'image_size={image_size} gives {(image_size // patch) ** 2} tokens: leave the image size '
        'out to use the checkpoint\'s.')
  overrides = {}
  if d_s != models.MODEL_CONFIGS[name].tokens_mlp_dim:
    overrides['tokens_mlp_dim'] = int(d_s)
  return dict(model_name=name, num_classes=int(info['num_classes'] or 0),
              image_size=image_size or side, overrides=overrides)
