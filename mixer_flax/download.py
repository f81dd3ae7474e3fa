"""Copies remote checkpoints (gs://, https://, file://) into a local cache, verified and resumable.

    path = fetch('gs://mixer_models/imagenet21k/Mixer-B_16.npz', sha256='...')
    # -> ~/.cache/mixer_flax/mixer_models/imagenet21k/Mixer-B_16.npz

The cache directory is `$MIXER_FLAX_CACHE`, else `~/.cache/mixer_flax`; `gs://BUCKET/...` and
`https://storage.googleapis.com/BUCKET/...` share one entry. A download goes to `<file>.part`
and is renamed into place only when complete and verified:

* size: the server's (Content-Length / Content-Range / object size) or `size=`; hash:
  `sha256=` when given, and the MD5 that Cloud Storage sends (`x-goog-hash`);
* an interrupted download (or a full cache disk: `fileio.WriteError`) is resumed (HTTP `Range`,
  or a seek) by the next call; a resumed file that does not verify is downloaded once more
  from scratch, a fresh one that does not verify is deleted with an error;
* a network wait is bounded by `timeout` s; an unreachable or silent server: `DownloadError`.
`gs://` is read anonymously over HTTPS (the public bucket); on 401/403 through `tf.io.gfile`
(credentials), the only TensorFlow use here. Files get the process umask.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import BinaryIO

import tqdm

from mixer_flax import fileio

__all__ = ['DownloadError', 'cache_dir', 'cache_path', 'fetch', 'file_sha256']

DEFAULT_TIMEOUT = 30.0
_CHUNK = 1 << 20
_GCS_HTTP = 'storage.googleapis.com'


class DownloadError(OSError):
  """A download that failed: unreachable, no answer, or not the expected file."""


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


def file_sha256(path: str, algorithm: str = 'sha256') -> str:
  """Hex digest (SHA-256 by default) of a local file."""
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    while chunk := f.read(_CHUNK):
      digest.update(chunk)
  return digest.hexdigest()


def _unreachable(url: str, reason: object) -> DownloadError:
  return DownloadError(f'{url} is unreachable ({reason}). Check the network connection, or '
                       'download the file by other means and pass its local path.')


def _http(url: str, offset: int, timeout: float):
  """Opens `url` from byte `offset`; returns (response, start offset, total size or None, md5)."""
  request = urllib.request.Request(url, headers={'Range': f'bytes={offset}-'} if offset else {})
  try:
    response = urllib.request.urlopen(request, timeout=timeout)
  except urllib.error.HTTPError as e:
    if e.code == 416 and offset:  # Range beyond the end: the partial file is stale.
      return _http(url, 0, timeout)
    if e.code == 404:
      raise FileNotFoundError(f'{url}: no such file (HTTP 404).') from e
    raise DownloadError(f'{url}: HTTP {e.code} {e.reason}.') from e
  except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
    reason = getattr(e, 'reason', e)
    if isinstance(reason, TimeoutError):
      raise DownloadError(f'{url}: no answer within {timeout:g} s (timeout).') from e
    raise _unreachable(url, reason) from e
  total = response.headers.get('Content-Length')
  total = int(total) if total else None
  start = 0
  if response.status == 206:
    m = re.match(r'bytes (\d+)-\d+/(\d+|\*)', response.headers.get('Content-Range', ''))
    start = int(m.group(1)) if m else 0
    total = int(m.group(2)) if m and m.group(2) != '*' else None
  md5 = None
  for part in (response.headers.get('x-goog-hash') or '').split(','):
    if part.strip().startswith('md5='):
      md5 = base64.b64decode(part.strip()[4:]).hex()
  return response, start, total, md5


@contextlib.contextmanager
def _open_source(url: str, offset: int,
                 timeout: float) -> Iterator[tuple[BinaryIO, int, int | None, str | None]]:
  """Opens `url` at byte `offset` (or 0); yields (stream, start, total size or None, md5)."""
  parsed = urllib.parse.urlparse(url)
  if parsed.scheme in ('', 'file'):
    path = urllib.parse.unquote(parsed.path) if parsed.scheme else url
    if not os.path.isfile(path):
      raise FileNotFoundError(f'{url}: no such file.')
    with open(path, 'rb') as f:
      size = os.path.getsize(path)
      f.seek(min(offset, size))
      yield f, min(offset, size), size, None
    return
  http_url = url
  if parsed.scheme == 'gs':
    http_url = f'https://{_GCS_HTTP}/{parsed.netloc}{parsed.path}'
  if parsed.scheme in ('http', 'https', 'gs'):
    try:
      response, start, total, md5 = _http(http_url, offset, timeout)
    except DownloadError as e:
      if parsed.scheme != 'gs' or not re.search(r'HTTP 40[13]', str(e)):
        raise DownloadError(f'{url}: {e}' if http_url != url else str(e)) from e
    else:
      with response:
        yield response, start, total, md5
      return
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Lazily: gs:// with credentials.
  try:
    if not tf.io.gfile.exists(url):
      raise FileNotFoundError(f'{url}: no such file.')
    size = tf.io.gfile.stat(url).length
    with tf.io.gfile.GFile(url, 'rb') as f:
      f.seek(min(offset, size))
      yield f, min(offset, size), size, None
  except tf.errors.OpError as e:
    raise _unreachable(url, e.message) from e


def _verify(part: str, *, url: str, size: int | None, sha256: str | None,
            md5: str | None) -> str | None:
  """A description of how `part` differs from what was expected, or None."""
  got = os.path.getsize(part)
  if size is not None and got != size:
    return f'{got} bytes instead of {size}'
  if sha256 and (digest := file_sha256(part)) != sha256.lower():
    return f'sha256 {digest} instead of {sha256.lower()}'
  if md5 and (digest := file_sha256(part, 'md5')) != md5:
    return f'md5 {digest} instead of {md5} (sent by the server)'
  return None


def _download(url: str, part: str, out: BinaryIO, *, progress: bool, timeout: float,
              size: int | None, sha256: str | None) -> str | None:
  """Appends the rest of `url` to `part` (open as `out`); returns `_verify`'s verdict."""
  offset = os.fstat(out.fileno()).st_size
  with _open_source(url, offset, timeout) as (source, start, total, md5):
    if start != offset:  # The server ignored the Range request or the file shrank: restart.
      out.truncate(0)
    out.seek(0, os.SEEK_END)
    if size is not None and total is not None and size != total:
      raise DownloadError(f'{url}: the server reports {total} bytes but {size} were expected.')
    with tqdm.tqdm(total=total, initial=start, unit='B', unit_scale=True, unit_divisor=1024,
                   disable=not progress, desc=os.path.basename(part)[:-5]) as bar:
      try:
        while chunk := source.read(_CHUNK):
          out.write(chunk)
          bar.update(len(chunk))
        if total is not None and out.tell() < total:
          raise ConnectionError('the connection closed early')
        out.flush()
        os.fsync(out.fileno())
      except (OSError, http.client.HTTPException) as e:  # Full disk; timeout, reset, short read.
        if full := fileio.write_error(e, what=f'the download of {url}', path=part,
                                      needed=total and total - start, remedy='Free space (the '
                                      'next call resumes), or set $MIXER_FLAX_CACHE elsewhere.'):
          raise full from e
        why = f'no data for {timeout:g} s' if isinstance(e, TimeoutError) else f'interrupted ({e})'
        raise DownloadError(f'{url}: {why} after {out.tell()} of {total or "?"} bytes; the '
                            f'partial download is kept in {part} and resumed by the next '
                            'call.') from e
  return _verify(part, url=url, size=size if size is not None else total, sha256=sha256, md5=md5)


def fetch(url: str, *, directory: str | None = None, progress: bool = True, force: bool = False,
          sha256: str | None = None, size: int | None = None,
          timeout: float = DEFAULT_TIMEOUT) -> str:
  """Copies `url` into the local cache (unless there and valid) and returns the local path.

  Args:
    url: `gs://...`, `https://...`, `file://...` or a local path.
    directory: cache directory (default `cache_dir()`).
    progress: show a tqdm progress bar.
    force: download again even if the file is cached.
    sha256: expected hex SHA-256; a cached file that differs is downloaded again.
    size: expected size in bytes.
    timeout: seconds any network wait may last before `DownloadError`.
  """
  dest = cache_path(url, directory=directory)
  if os.path.exists(dest) and not force:
    if not _verify(dest, url=url, size=size, sha256=sha256, md5=None):
      return dest
    os.remove(dest)  # Cached but not what the caller expects: fetch it again.
  os.makedirs(os.path.dirname(dest), exist_ok=True)
  part = dest + '.part'
  while True:  # Lock the partial file; another process may be downloading it.
    with open(part, 'ab') as out:
      fcntl.flock(out.fileno(), fcntl.LOCK_EX)
      if os.path.exists(dest) and not force:
        return dest  # Finished by the process we waited for.
      if not (os.path.exists(part) and os.path.samestat(os.fstat(out.fileno()), os.stat(part))):
        continue  # The file we locked was renamed or deleted meanwhile.
      try:
        return _download_verified(url, part, dest, out, progress=progress, timeout=timeout,
                                  size=size, sha256=sha256)
      except BaseException:
        if os.path.exists(part) and not os.path.getsize(part):
          os.remove(part)  # Nothing to resume (e.g. no such file): leave nothing behind.
        raise


def _download_verified(url: str, part: str, dest: str, out: BinaryIO, **kwargs) -> str:
  """Downloads to `part` (resuming), verifies, renames it `dest`; restarts a stale `part` once."""
  for attempt in range(2):
    resumed = os.fstat(out.fileno()).st_size > 0
    problem = _download(url, part, out, **kwargs)
    if problem is None:
      os.replace(part, dest)
      return dest
    out.truncate(0)
    if not resumed or attempt:
      os.remove(part)
      raise DownloadError(f'{url}: the download has {problem}; deleted it. The file on the '
                          'server differs from the one expected: check the URL and hash.')
  raise AssertionError('unreachable')
