"""Workdir file access for local paths and object stores (`gs://...`) through `etils.epath`.

`etils.epath` picks the backend per path (local files without TensorFlow; `gs://` through
`tf.io.gfile` or fsspec). Paths may also be given as `file://...`, which epath does not
know: the prefix is dropped.
"""

from __future__ import annotations

import os
from typing import IO

from etils import epath


def is_local(path: str) -> bool:
  """True for plain and `file://` paths."""
  return '://' not in path or path.startswith('file://')


def path_of(path: str) -> epath.Path:
  """`path` as an `epath.Path` (`file://` dropped)."""
  return epath.Path(path[len('file://'):] if path.startswith('file://') else path)


def join(*parts: str) -> str:
  """`os.path.join` that keeps `gs://bucket/...` prefixes intact."""
  return os.path.join(*parts)


def absolute(path: str) -> str:
  """Absolute local path; remote paths unchanged."""
  return os.path.abspath(path_of(path)) if is_local(path) else path


def exists(path: str) -> bool:
  """Whether `path` exists."""
  return path_of(path).exists()


def makedirs(path: str) -> None:
  """Creates `path` and its parents (no error if it exists)."""
  path_of(path).mkdir(parents=True, exist_ok=True)


def open_file(path: str, mode: str = 'r') -> IO:
  """Opens a text/binary file; mode 'a' is only supported for local paths."""
  if 'a' in mode and not is_local(path):
    raise ValueError(f'Appending is not supported on object stores: {path}')
  return path_of(path).open(mode)
