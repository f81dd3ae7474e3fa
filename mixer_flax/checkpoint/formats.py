"""One entry point for every checkpoint format: official `.npz` or a timm state_dict.

`load_params(path)` reads `.npz` files (official, older layouts, see `npz.py` and
`legacy.py`) and timm `MlpMixer` state_dicts (`.safetensors`, `.pth`, `.pt`, `.bin`;
see `timm_import.py`), recognised by extension, else by content (a zip of `.npy` files is
an `.npz`), and returns the nested official layout. With `sha256=` the file is
checked first (remote files are fetched into the cache, see `mixer_flax.download`).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

from mixer_flax import download
from mixer_flax.checkpoint import npz, timm_import
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.tree import CheckpointError, unflatten

__all__ = ['load_params']


def _is_remote(path: str) -> bool:
  return '://' in path and not path.startswith('file://')


def _is_torch_zip(path: str) -> bool:
  """A `torch.save` archive (zip with a `data.pkl`) rather than an `.npz` (zip of `.npy`)."""
  try:
    with zipfile.ZipFile(path) as z:
      return any(name.endswith('data.pkl') for name in z.namelist())
  except (zipfile.BadZipFile, OSError):
    return False


def _local_copy(path: str, sha256: str | None) -> str:
  """A local file for `path` (remote: fetched into the cache), its SHA-256 checked if given."""
  if _is_remote(path):
    return download.fetch(path, sha256=sha256)
  local = npz.local_path(path)
  if not os.path.exists(local):
    raise FileNotFoundError(f'Checkpoint {path} does not exist.')
  if sha256 and (digest := download.file_sha256(local)) != sha256.lower():
    raise CheckpointError(f'{path}: sha256 {digest} differs from the expected {sha256.lower()}; '
                          'the file is not the one expected.')
  return local


def load_params(path: str, *, sha256: str | None = None) -> dict[str, Any]:
  """Reads a Mixer checkpoint of any supported format (module doc) into the official layout.

  Args:
    path: local path, `file://`, `gs://` or `https://` URL.
    sha256: expected hex SHA-256 of the file (optional).

  Returns:
    Nested dict of float32 np.ndarray.

  Raises:
    FileNotFoundError, download.DownloadError, CheckpointError naming the file.
  """
  timm_file = path.endswith(timm_import.TIMM_SUFFIXES)
  if not (sha256 or timm_file) and (_is_remote(path) or not _is_torch_zip(npz.local_path(path))):
    return npz.load_npz(path)  # Streams gs:// without a cached copy.
  local = _local_copy(path, sha256)
  if not (timm_file or _is_torch_zip(local)):
    return npz.load_npz(local)
  state = timm_import.read_state_dict(local, error=CheckpointError)
  flat = timm_import.from_timm_state_dict(state, source=path, error=CheckpointError)
  return unflatten(convert_legacy(flat, source=path))
