"""Official `.npz` checkpoint interop: load, save, fine-tune loading.

The released files (`gs://mixer_models/...`) are `np.savez` archives of the
flat parameter dict, keys '/'-joined (`MixerBlock_0/token_mixing/Dense_0/kernel`),
float32, no pickle. `load_npz` also reads an older internal layout
(`Mixer/encoderblock_N/...`, `Mixer/encoder_norm`, `Mixer/embedding`) and
renames it to the official one:

    embedding      -> stem
    encoderblock_N -> MixerBlock_N
    encoder_norm   -> pre_head_layer_norm
    (a leading 'Mixer/' scope is dropped; names inside a block are kept)

`load_pretrained` checks every key and shape against the model's freshly
initialised parameters, swaps in the fresh head when the class count differs,
and adapts the token-mixing MLPs block-diagonally (PAPER_FACTS 6) when the
model sees K^2 times the checkpoint's tokens. TensorFlow is imported only to
read or write non-local paths such as `gs://`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from mixer_flax import models
from mixer_flax.checkpoint_adapt import adapt_token_mixing, token_grid_factor

__all__ = ['CheckpointError', 'load_npz', 'save_npz', 'flatten', 'unflatten', 'convert_legacy',
           'load_pretrained', 'restore_params', 'finetune_overrides', 'adapt_token_mixing']

_TOP_LEVEL = re.compile(r'^(stem|MixerBlock_\d+|pre_head_layer_norm|head)$')
_LEGACY_RENAMES = ((re.compile(r'^embedding(?=/|$)'), 'stem'),
                   (re.compile(r'^encoderblock_(\d+)(?=/|$)'), r'MixerBlock_\1'),
                   (re.compile(r'^encoder_norm(?=/|$)'), 'pre_head_layer_norm'))
_TOKEN_KEYS = ('token_mixing/Dense_0/kernel', 'token_mixing/Dense_0/bias',
               'token_mixing/Dense_1/kernel', 'token_mixing/Dense_1/bias')


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not fit the model."""


# ---------------------------------------------------------------------------
# Flat <-> nested.

def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested dict `{'a': {'b': x}}` -> flat `{'a/b': x}`."""
  flat = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      for sub, leaf in flatten(value).items():
        flat[f'{key}/{sub}'] = leaf
    else:
      flat[key] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Flat `{'a/b': x}` -> nested `{'a': {'b': x}}`."""
  nested: dict[str, Any] = {}
  for key, value in flat.items():
    *scopes, name = key.split('/')
    node = nested
    for scope in scopes:
      node = node.setdefault(scope, {})
    node[name] = value
  return nested


def convert_legacy(flat: dict[str, np.ndarray], *,
                   source: str = '<params>') -> dict[str, np.ndarray]:
  """Renames the older internal layout to the official one (see module doc).

  Official-layout input is returned unchanged. Raises `CheckpointError` when
  top-level names remain that neither layout knows.
  """
  out = {}
  for key, value in flat.items():
    new = key[len('Mixer/'):] if key.startswith('Mixer/') else key
    for pattern, repl in _LEGACY_RENAMES:
      new = pattern.sub(repl, new)
    out[new] = value
  if out.keys() != flat.keys():
    logging.info('%s: converted the older `Mixer/encoderblock_N` layout to the official names.',
                 source)
  unknown = sorted({k.split('/')[0] for k in out if not _TOP_LEVEL.match(k.split('/')[0])})
  if unknown:
    raise CheckpointError(
        f'{source}: unknown top-level parameter names {unknown}; expected stem, MixerBlock_N, '
        'pre_head_layer_norm, head (official layout) or Mixer/embedding, Mixer/encoderblock_N, '
        'Mixer/encoder_norm (older layout). Is this an MLP-Mixer checkpoint?')
  return out


# ---------------------------------------------------------------------------
# .npz I/O.

def _is_local(path: str) -> bool:
  return '://' not in path or path.startswith('file://')


def _local(path: str) -> str:
  return path[len('file://'):] if path.startswith('file://') else path


def _open(path: str) -> BinaryIO:
  """A seekable binary file object for `path` (no copy of the whole file in memory)."""
  if path.startswith(('http://', 'https://')):
    from mixer_flax import download  # pylint: disable=g-import-not-at-top
    path = download.fetch(path)
  if _is_local(path):
    return open(_local(path), 'rb')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazily: gs:// etc.
  return tf.io.gfile.GFile(path, 'rb')


def _read_arrays(f: BinaryIO, path: str) -> dict[str, np.ndarray]:
  """All arrays of the `.npz` archive in `f`, never unpickling."""
  flat = {}
  try:
    npz = np.load(f, allow_pickle=False)
    if not isinstance(npz, np.lib.npyio.NpzFile):
      raise CheckpointError(f'{path}: holds a single array (.npy), not an .npz archive of '
                            'named parameters.')
    with npz:
      for key in npz.files:
        try:
          flat[key] = npz[key]
        except ValueError as e:  # Object arrays need pickle.
          raise CheckpointError(
              f'{path}: array {key!r} is a pickled object array; refusing to unpickle '
              '(allow_pickle=False). Only plain float arrays are accepted: re-save the '
              'parameters with mixer_flax.checkpoint.save_npz.') from e
  except CheckpointError:
    raise
  except Exception as e:  # BadZipFile, EOFError, zlib.error, ValueError (pickled file), ...
    raise CheckpointError(
        f'{path}: not a readable .npz checkpoint ({type(e).__name__}: {e}); the file is '
        'truncated, corrupt or of another format. Delete it and download it again.') from e
  return flat


def load_npz(path: str) -> dict[str, Any]:
  """Reads a checkpoint `.npz` (local, file://, gs:// and other tf.io.gfile paths, https).

  Args:
    path: the file.

  Returns:
    Nested dict of np.ndarray in the official layout (older layout converted).

  Raises:
    FileNotFoundError: no such file.
    CheckpointError: not a readable `.npz`, a pickled (object) array, or not a
      Mixer parameter layout.
  """
  if _is_local(path) and not os.path.exists(_local(path)):
    raise FileNotFoundError(f'Checkpoint {path} does not exist.')
  with _open(path) as f:  # Errors opening the file propagate unchanged.
    flat = _read_arrays(f, path)
  if not flat:
    raise CheckpointError(f'{path}: the archive holds no arrays.')
  for key, value in flat.items():
    if not np.issubdtype(value.dtype, np.floating):
      raise CheckpointError(f'{path}: array {key!r} has dtype {value.dtype}; parameters must be '
                            'floating point.')
  return unflatten(convert_legacy(flat, source=path))


def save_npz(path: str, params: Mapping[str, Any]) -> None:
  """Writes `params` as an official-layout `.npz` (flat '/'-joined keys, float32).

  The write is atomic for local paths (temporary file + rename).

  Args:
    path: destination (local, file://, or any tf.io.gfile path).
    params: nested dict of arrays (numpy or jax), e.g. `variables['params']`.
  """
  flat = {}
  for key, value in flatten(params).items():
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype.name == 'bfloat16'):
      raise CheckpointError(f'save_npz({path}): parameter {key!r} has dtype {array.dtype}; '
                            'only floating-point parameters can be saved.')
    flat[key] = array.astype(np.float32)
  if not _is_local(path):
    buffer = io.BytesIO()
    np.savez(buffer, **flat)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, 'wb') as f:  # Object stores publish objects atomically.
      f.write(buffer.getvalue())
    return
  path = _local(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.npz')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, **flat)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


# ---------------------------------------------------------------------------
# Fine-tuning.

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
