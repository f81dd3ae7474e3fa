"""Workdir file access for local paths and object stores (`gs://...`, via `tf.io.gfile`).

Local paths use the standard library (no TensorFlow import); anything with a `scheme://`
other than `file://` goes through `tf.io.gfile`, imported only then.
"""

from __future__ import annotations

import os
from typing import IO


def is_local(path: str) -> bool:
  """True for plain and `file://` paths."""
  return '://' not in path or path.startswith('file://')


def _local(path: str) -> str:
  return path[len('file://'):] if path.startswith('file://') else path


def join(*parts: str) -> str:
  """`os.path.join` that keeps `gs://bucket/...` prefixes intact."""
  return os.path.join(*parts)


def absolute(path: str) -> str:
  """Absolute local path; remote paths unchanged."""
  return os.path.abspath(_local(path)) if is_local(path) else path


def exists(path: str) -> bool:
  """Whether `path` exists."""
  if is_local(path):
    return os.path.exists(_local(path))
  import tensorflow as tf
  return tf.io.gfile.exists(path)


def makedirs(path: str) -> None:
  """Creates `path` and its parents (no error if it exists)."""
  if is_local(path):
    os.makedirs(_local(path), exist_ok=True)
    return
  import tensorflow as tf
  tf.io.gfile.makedirs(path)


def open_file(path: str, mode: str = 'r') -> IO:
  """Opens a text/binary file; mode 'a' is only supported for local paths."""
  if is_local(path):
    return open(_local(path), mode)
  if 'a' in mode:
    raise ValueError(f'Appending is not supported on object stores: {path}')
  import tensorflow as tf
  return tf.io.gfile.GFile(path, mode)
