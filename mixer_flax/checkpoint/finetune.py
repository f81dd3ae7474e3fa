"""Fine-tuning from a checkpoint: fit its parameters to a model's.

`load_pretrained` checks every key and shape against the model's freshly
initialised parameters, swaps in the fresh head when the class count differs,
and adapts the token-mixing MLPs block-diagonally (paper, section 3.3 and
appendix C; `adapt.py`) when the model sees K^2 times the checkpoint's tokens.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixer_flax import models
from mixer_flax.checkpoint.adapt import adapt_token_mixing, token_grid_factor
from mixer_flax.checkpoint.legacy import CheckpointError, convert_legacy, flatten, unflatten
from mixer_flax.checkpoint.npz import load_npz

__all__ = ['canonical_order', 'restore_params', 'load_pretrained', 'finetune_overrides']

_TOKEN_KEYS = ('token_mixing/Dense_0/kernel', 'token_mixing/Dense_0/bias',
               'token_mixing/Dense_1/kernel', 'token_mixing/Dense_1/bias')



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
                   source: str = '<params>') -> dict[str, Any]:
  """Fits checkpoint params to a model (the work of `load_pretrained`).

  Args:
    restored: nested checkpoint params (official layout).
    init_params: the model's initialised params (arrays, or shape/dtype structs
      when the head need not be replaced).
    source: name used in error messages (the file).

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
  keep_head = all(k in ckpt and ckpt[k].shape == init[k].shape
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
            f'{source}: the head is replaced (class count differs) but init_params[{key!r}] '
            'holds no values; pass initialised params.'))
        continue
      out[key] = np.array(want, dtype=want.dtype)
      continue
    got = ckpt[key]
    try:
      if got.shape != want.shape and key.endswith(_TOKEN_KEYS):
        got = _adapted(ckpt, init, key, source, cache)
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
    logging.info('%s: head replaced by the model\'s fresh head (%s classes in the checkpoint).',
                 source, ckpt['head/bias'].shape[0] if 'head/bias' in ckpt else 'no head')
  return unflatten({k: out[k] for k in init})


def _adapted(ckpt: dict, init: dict, key: str, source: str, cache: dict) -> np.ndarray:
  """The block-diagonally widened version of token-mixing parameter `key`."""
  block, name = key.rsplit('/token_mixing/', 1)
  if block in cache:
    return cache[block][name]
  k0 = f'{block}/token_mixing/Dense_0/kernel'
  (s, d), (s_new, d_new) = ckpt[k0].shape, init[k0].shape
  factor = token_grid_factor(s, s_new)
  if factor is None:
    raise _shape_error(source, k0, ckpt[k0].shape, init[k0].shape, (
        f'The model has {s_new} tokens and the checkpoint {s}: fine-tuning at another resolution '
        'needs square token grids and an integer factor K between the two sides.'))
  if d_new != factor * factor * d:
    raise _shape_error(source, k0, ckpt[k0].shape, init[k0].shape, (
        f'At {factor}x the resolution the token MLP must be {factor}^2 times wider: build the '
        f'model with tokens_mlp_dim={factor * factor * d} (see finetune_overrides).'))
  names = [k[len('token_mixing/'):] for k in _TOKEN_KEYS]
  cache[block] = adapt_token_mixing({n: ckpt[f'{block}/token_mixing/{n}'] for n in names},
                                    factor=factor)
  logging.info('%s: %s token MLP adapted block-diagonally to %dx the resolution.', source, block,
               factor)
  return cache[block][name]


def load_pretrained(*, path: str, init_params: Mapping[str, Any]) -> dict[str, Any]:
  """Loads checkpoint `path` for fine-tuning a model whose fresh params are `init_params`.

  Every key and shape is checked. The head comes from `init_params` when the
  class count differs (or the checkpoint has none). When the model has K^2
  times the checkpoint's tokens (integer K, same patch size) and a K^2 times
  wider token MLP, the token-mixing MLPs are adapted block-diagonally, so that
  each KxK tile of the larger image is mixed as the checkpoint mixed a whole image.

  Args:
    path: `.npz` file (see `load_npz`).
    init_params: `model.init(...)['params']` of the model to fine-tune.

  Returns:
    Nested dict of np.ndarray shaped exactly like `init_params`.
  """
  return restore_params(restored=load_npz(path), init_params=init_params, source=path)


def finetune_overrides(*, model_name: str, image_size: int,
                       pretrained_image_size: int = 224) -> dict[str, int]:
  """`create_model` overrides for fine-tuning at `image_size` from `pretrained_image_size`.

  Returns:
    `{'tokens_mlp_dim': K*K*D_S}` when image_size = K * pretrained_image_size
    with integer K > 1, `{}` when the sizes are equal.
  """
  if image_size <= 0 or image_size % pretrained_image_size:
    raise ValueError(
        f'image_size={image_size} is not an integer multiple of pretrained_image_size='
        f'{pretrained_image_size}; the block-diagonal token-MLP adaptation (paper, appendix C) '
        f'needs an integer factor K, e.g. image_size={2 * pretrained_image_size}.')
  factor = image_size // pretrained_image_size
  if factor == 1:
    return {}
  return {'tokens_mlp_dim': factor * factor * models.get_config(model_name).tokens_mlp_dim}
