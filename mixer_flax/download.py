"""Copies remote checkpoints (gs://, https://, file://) into a local cache.

    path = fetch('gs://mixer_models/imagenet21k/Mixer-B_16.npz')
    # -> ~/.cache/mixer_flax/mixer_models/imagenet21k/Mixer-B_16.npz

The cache directory is `$MIXER_FLAX_CACHE`, else `~/.cache/mixer_flax`. A file
already in the cache is not copied again; copies go to a temporary file that is
renamed into place only when complete, so an interrupted copy leaves nothing
behind that looks finished. `https://storage.googleapis.com/BUCKET/...` and
`gs://BUCKET/...` share one cache entry. TensorFlow is imported only for
`gs://` (and other tf.io.gfile) sources.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import BinaryIO

import tqdm

__all__ = ['cache_dir', 'cache_path', 'fetch']

_CHUNK = 1 << 20
_GCS_HTTP = 'storage.googleapis.com'


def cache_dir() -> str:
  """`$MIXER_FLAX_CACHE` or `~/.cache/mixer_flax`."""
  return os.environ.get('MIXER_FLAX_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'mixer_flax')


def cache_path(url: str, *, directory: str | None = None) -> str:
  """Where `fetch` puts `url`: `<cache>/<host or bucket>/<path>` (local: `<cache>/file/<path>`)."""
  parsed = urllib.parse.urlparse(url)
  scheme = parsed.scheme or 'file'
  netloc, path = parsed.netloc, parsed.path.lstrip('/')
  if scheme in ('http', 'https') and netloc == _GCS_HTTP:
    netloc, _, path = path.partition('/')
  if scheme == 'file' or not netloc:
    netloc = 'file'
    path = os.path.abspath(parsed.path if parsed.scheme else url).lstrip('/')
  parts = [p for p in [netloc, *path.split('/')] if p not in ('', '.', '..')]
  if len(parts) < 2:
    raise ValueError(f'Cannot derive a cache file name from {url!r}.')
  return os.path.join(directory or cache_dir(), *parts)


@contextlib.contextmanager
def _open_source(url: str) -> Iterator[tuple[BinaryIO, int | None]]:
  """Opens `url` for reading; yields (stream, size in bytes or None)."""
  parsed = urllib.parse.urlparse(url)
  if parsed.scheme in ('', 'file'):
    path = urllib.parse.unquote(parsed.path) if parsed.scheme else url
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{url}: no such file.')
    with open(path, 'rb') as f:
      yield f, os.path.getsize(path)
  elif parsed.scheme in ('http', 'https'):
    with urllib.request.urlopen(url, timeout=60) as response:
      length = response.headers.get('Content-Length')
      yield response, int(length) if length else None
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazily: gs:// etc.
    if not tf.io.gfile.exists(url):
      raise FileNotFoundError(f'{url}: no such file.')
    size = tf.io.gfile.stat(url).length
    with tf.io.gfile.GFile(url, 'rb') as f:
      yield f, size


def fetch(url: str, *, directory: str | None = None, progress: bool = True,
          force: bool = False) -> str:
  """Copies `url` into the local cache (unless already there) and returns the local path.

  Args:
    url: `gs://...`, `https://...`, `file://...` or a local path.
    directory: cache directory (default `cache_dir()`).
    progress: show a tqdm progress bar.
    force: copy again even if the file is cached.

  Returns:
    Path of the cached copy.
  """
  dest = cache_path(url, directory=directory)
  if os.path.exists(dest) and not force:
    return dest
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix='.tmp-', suffix='.part')
  try:
    with os.fdopen(fd, 'wb') as out, _open_source(url) as (source, size), tqdm.tqdm(
        total=size, unit='B', unit_scale=True, unit_divisor=1024, disable=not progress,
        desc=os.path.basename(dest)) as bar:
      copied = 0
      while chunk := source.read(_CHUNK):
        out.write(chunk)
        copied += len(chunk)
        bar.update(len(chunk))
      out.flush()
      os.fsync(out.fileno())
    if size is not None and copied != size:
      raise OSError(f'{url}: copied {copied} bytes but the source has {size}; try again.')
    os.replace(tmp, dest)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  return dest

