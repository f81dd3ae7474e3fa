"""Official `.npz` checkpoint files: read and write the flat parameter layout.

The released files (`gs://mixer_models/...`) are `np.savez` archives of the
flat parameter dict, keys '/'-joined (`MixerBlock_0/token_mixing/Dense_0/kernel`),
float32, no pickle. `load_npz` also reads the older layouts of `legacy.py`.
Files are opened through `fileio` (`etils.epath`): TensorFlow only for paths such as `gs://`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from mixer_flax import fileio
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.tree import CheckpointError, flatten, unflatten

__all__ = ['load_npz', 'save_npz', 'local_path']


def local_path(path: str) -> str:
  """A local `path` without its `file://` prefix."""
  return os.fspath(fileio.path_of(path))


def _is_storage_error(error: BaseException) -> bool:
  """A TensorFlow file-system error (no network, no access, ...), not a bad file."""
  return any(c.__name__ == 'OpError' and c.__module__.startswith('tensorflow')
             for c in type(error).__mro__)


def _open(path: str) -> BinaryIO:
  """A seekable binary file object for `path` (no copy of the whole file in memory)."""
  if path.startswith(('http://', 'https://')):
    from mixer_flax import download  # pylint: disable=g-import-not-at-top
    path = download.fetch(path)
  try:
    return fileio.open_file(path, 'rb')
  except Exception as e:
    if _is_storage_error(e):  # E.g. offline gs://.
      raise _unreachable(path, e) from e
    raise


def _unreachable(path: str, error: BaseException) -> OSError:
  from mixer_flax import download  # pylint: disable=g-import-not-at-top
  return download.DownloadError(f'{path} is unreachable ({getattr(error, "message", error)}); '
                                'check the network connection and your access to it.')


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
    if _is_storage_error(e):  # E.g. offline gs://: the file itself may be fine.
      raise _unreachable(path, e) from e
    raise CheckpointError(
        f'{path}: not a readable .npz checkpoint ({type(e).__name__}: {e}); the file is '
        'truncated, corrupt or of another format. Delete it and download it again.') from e
  return flat


def check_readable(path: str) -> None:
  """Reads the first byte of `path`: a missing or unreachable file fails here, in one line.

  Raises:
    FileNotFoundError: no such local file.
    download.DownloadError: a remote file that cannot be reached (offline, no access).
  """
  if fileio.is_local(path) and not fileio.exists(path):
    raise FileNotFoundError(f'Checkpoint {path} does not exist.')
  try:
    with _open(path) as f:  # gs:// opens lazily: errors surface on entering or reading
      f.read(1)
  except Exception as e:
    if _is_storage_error(e):
      raise _unreachable(path, e) from e
    raise


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
  if fileio.is_local(path) and not fileio.exists(path):
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

  The write is atomic (temporary file + rename): a failure leaves no partial file, and a
  refused write (full disk, ...) raises `fileio.WriteError` in one line.

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
  needed = sum(a.nbytes for a in flat.values()) + 200 * len(flat)  # + zip headers
  with fileio.atomic_output(path, what=f'the parameters ({os.path.basename(path)})',
                            needed=needed) as f:
    np.savez(f, **flat)
