"""Fine-tuning from a checkpoint: fit its parameters to a model's.

`load_pretrained` checks every key and shape against the model's freshly initialised
parameters, swaps in the model's fresh head (always, as the reference's fine-tuning;
`keep_head=True` keeps a checkpoint head of the right shape), and fits the token-mixing MLPs
to the model's token grid (`adapt.py`): exactly block-diagonally (paper, section 3.3 and
appendix C) when the model sees K^2 times the checkpoint's tokens and has a K^2 times wider
token MLP, else by bilinear resampling of the token axis (any image size divisible by the
patch, non-square grids too; the token MLP keeps its width).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixer_flax import models
from mixer_flax.checkpoint.adapt import adapt_token_mixing, resample_token_mixing
from mixer_flax.checkpoint.formats import load_params
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.tree import CheckpointError, flatten, unflatten

__all__ = ['canonical_order', 'restore_params', 'load_pretrained', 'finetune_overrides']

_TOKEN_NAMES = ('Dense_0/kernel', 'Dense_0/bias', 'Dense_1/kernel', 'Dense_1/bias')
_TOKEN_KEYS = tuple(f'token_mixing/{n}' for n in _TOKEN_NAMES)



def canonical_order(key: str) -> tuple:
  """Sort key: stem, MixerBlock_0, 1, ..., 10 (numerically), pre-head norm, head; kernels first."""
  top, _, rest = key.partition('/')
  block = re.match(r'MixerBlock_(\d+)$', top)
  group = ('stem', 'MixerBlock', 'pre_head_layer_norm', 'head')
  rank = group.index('MixerBlock' if block else top) if (block or top in group) else len(group)
  scope, _, leaf = rest.rpartition('/')
  leaf_rank = {'kernel': 0, 'scale': 1, 'bias': 2}.get(leaf, 3)
  return (rank, int(block.group(1)) if block else 0, top, scope, leaf_rank, leaf)


def _shape_error(source: str, key: str, got: tuple, want: tuple, hint: str = '') -> CheckpointError:
  return CheckpointError(
      f'{source}: parameter {key!r} has shape {tuple(got)} in the checkpoint but the model '
      f'expects {tuple(want)}.{" " + hint if hint else ""}')


def restore_params(*, restored: Mapping[str, Any], init_params: Mapping[str, Any],
                   source: str = '<params>', token_grid: tuple[int, int] | None = None,
                   pretrained_token_grid: tuple[int, int] | None = None,
                   keep_head: bool = True) -> dict[str, Any]:
  """Fits checkpoint params to a model (the work of `load_pretrained`).

  Args:
    restored: nested checkpoint params (official layout).
    init_params: the model's initialised params (arrays, or shape/dtype structs
      when the head need not be replaced).
    source: name used in error messages (the file).
    token_grid: (rows, columns) of the model's tokens; needed only when their
      number is not a square.
    pretrained_token_grid: the same for the checkpoint.
    keep_head: keep the checkpoint's head when its shapes are the model's; else (or when
      the class count differs) the head of `init_params`.

  Returns:
    Nested dict of np.ndarray with exactly the keys, shapes and dtypes of `init_params`.
  """
  ckpt = convert_legacy(flatten(restored), source=source)
  init = flatten(init_params)
  missing = sorted((k for k in init if k not in ckpt and not k.startswith('head/')),
                   key=canonical_order)
  if missing:
    raise CheckpointError(f'{source}: missing parameter(s) {missing} that the model needs; '
                          'the checkpoint is incomplete or of another architecture.')
  extra = sorted((k for k in ckpt if k not in init and not k.startswith('head/')),
                 key=canonical_order)
  if extra:
    raise CheckpointError(f'{source}: parameter(s) {extra} are not in the model (the model has '
                          f'{len(init)} parameters); is it a deeper variant?')

  out: dict[str, Any] = {}
  cache: dict[str, dict[str, np.ndarray]] = {}
  keep_head = keep_head and all(k in ckpt and ckpt[k].shape == init[k].shape
                                for k in init if k.startswith('head/'))
  mismatched = []
  for key in sorted(init, key=canonical_order):
    want = init[key]
    if key.startswith('head/') and not keep_head:
      if ('head/kernel' in ckpt and key == 'head/kernel'
          and ckpt[key].shape[0] != want.shape[0]):
        mismatched.append(_shape_error(source, key, ckpt[key].shape, want.shape))
        continue
      if not hasattr(want, '__array__'):
        mismatched.append(CheckpointError(
            f'{source}: the head is replaced by the model\'s but init_params[{key!r}] holds no '
            'values; pass initialised params (or keep_head=True to keep a matching head).'))
        continue
      out[key] = np.array(want, dtype=want.dtype)
      continue
    got = ckpt[key]
    try:
      if got.shape != want.shape and key.endswith(_TOKEN_KEYS):
        got = _adapted(ckpt, init, key, source, cache, (pretrained_token_grid, token_grid))
      if got.shape != want.shape:
        raise _shape_error(source, key, got.shape, want.shape)
    except CheckpointError as e:
      mismatched.append(e)
      continue
    out[key] = np.asarray(got, dtype=want.dtype)
  if len(mismatched) == 1:
    raise mismatched[0]
  if mismatched:
    raise CheckpointError(
        f'{mismatched[0]} Is the checkpoint of another variant (width, depth, patch size)? '
        f'{len(mismatched)} parameters differ in all.')
  if not keep_head:
    logging.info('%s: the model\'s fresh head replaces the checkpoint\'s (%s classes).',
                 source, ckpt['head/bias'].shape[0] if 'head/bias' in ckpt else 'no head')
  return unflatten({k: out[k] for k in init})


def _grid(tokens: int, grid: tuple[int, int] | None) -> tuple[int, int] | None:
  """`grid` if it holds `tokens` tokens; else the square grid of `tokens`, or None."""
  if grid is not None:
    return tuple(grid) if grid[0] * grid[1] == tokens else None
  side = math.isqrt(tokens)
  return (side, side) if side * side == tokens else None


def _adapted(ckpt: dict, init: dict, key: str, source: str, cache: dict,
             grids: tuple) -> np.ndarray:
  """Token-mixing parameter `key` fitted to the model's token grid (module doc)."""
  block, name = key.rsplit('/token_mixing/', 1)
  if block in cache:
    return cache[block][name]
  k0 = f'{block}/token_mixing/Dense_0/kernel'
  (s, d), (s_new, d_new) = ckpt[k0].shape, init[k0].shape
  old, new = _grid(s, grids[0]), _grid(s_new, grids[1])
  if old is None or new is None:
    raise _shape_error(source, k0, ckpt[k0].shape, init[k0].shape, (
        f'{s} and {s_new} tokens: pass token_grid=(rows, columns) (and pretrained_token_grid) '
        'for token grids that are not square.'))
  factor = new[0] // old[0]
  if new != (factor * old[0], factor * old[1]) or old[0] != old[1]:
    factor = 0  # Block-diagonal needs a square checkpoint grid and one integer factor.
  tm = {n: ckpt[f'{block}/token_mixing/{n}'] for n in _TOKEN_NAMES}
  if d_new == d:
    cache[block] = resample_token_mixing(tm, old_grid=old, new_grid=new)
    logging.info('%s: %s token MLP resampled from a %dx%d to a %dx%d token grid.', source, block,
                 *old, *new)
  elif factor and d_new == factor * factor * d:
    cache[block] = adapt_token_mixing(tm, factor=factor)
    logging.info('%s: %s token MLP adapted block-diagonally to %dx the resolution.', source,
                 block, factor)
  else:
    widths = f'{d} (resampled token grid)' + (
        f' or {factor * factor * d} (block-diagonal, {factor}x the resolution)' if factor else '')
    raise _shape_error(source, k0, ckpt[k0].shape, init[k0].shape, (
        f'From {old[0]}x{old[1]} to {new[0]}x{new[1]} tokens build the model with '
        f'tokens_mlp_dim={widths}; see finetune_overrides.'))
  return cache[block][name]


def load_pretrained(*, path: str, init_params: Mapping[str, Any],
                    token_grid: tuple[int, int] | None = None,
                    pretrained_token_grid: tuple[int, int] | None = None,
                    sha256: str | None = None, keep_head: bool = False) -> dict[str, Any]:
  """Loads checkpoint `path` for fine-tuning a model whose fresh params are `init_params`.

  Every key and shape is checked. The head comes from `init_params` (the model's fresh
  zero head), even when the class count is the same, unless `keep_head`. The token-mixing MLPs are
  fitted to the model's token grid (module doc): block-diagonally when the model
  has K^2 times the tokens and a K^2 times wider token MLP (each KxK tile of the
  larger image is mixed as the checkpoint mixed a whole image), else resampled.

  Args:
    path: `.npz` or timm `.safetensors`/`.pth` file (see `formats.load_params`).
    init_params: `model.init(...)['params']` of the model to fine-tune.
    token_grid: (rows, columns) of the model's tokens, for non-square grids.
    pretrained_token_grid: the same for the checkpoint.
    sha256: expected SHA-256 of the file.
    keep_head: keep the checkpoint's head when the class count is the model's (loading a
      classifier at another resolution; `init_params` may then be shapes only).

  Returns:
    Nested dict of np.ndarray shaped exactly like `init_params`.
  """
  # Fine-tuning starts from a new zero head, as vit_jax's checkpoint.load_pretrained always does.
  return restore_params(restored=load_params(path, sha256=sha256), init_params=init_params,
                        source=path, token_grid=token_grid,
                        pretrained_token_grid=pretrained_token_grid, keep_head=keep_head)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
  return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def finetune_overrides(*, model_name: str, image_size: int | tuple[int, int],
                       pretrained_image_size: int | tuple[int, int] = 224) -> dict[str, int]:
  """`create_model` overrides for fine-tuning at `image_size` from `pretrained_image_size`.

  Sizes are a side or (height, width). Any size divisible by the patch works.

  Returns:
    `{'tokens_mlp_dim': K*K*D_S}` when image_size = K * pretrained_image_size
    with integer K > 1 (block-diagonal adaptation), else `{}` (the token grid is
    resampled, or the sizes are equal).
  """
  config = models.get_config(model_name)
  (h, w), (h0, w0) = _pair(image_size), _pair(pretrained_image_size)
  if min(h, w) <= 0 or h % config.patch_size or w % config.patch_size:
    raise ValueError(f'image_size={image_size} is not a positive multiple of the patch size '
                     f'{config.patch_size} of {model_name}.')
  factor = h // h0
  if factor > 1 and (h, w) == (factor * h0, factor * w0):
    return {'tokens_mlp_dim': factor * factor * config.tokens_mlp_dim}
  return {}
