"""File access for local paths and object stores (`gs://...`), and the one error of a refused write.

`etils.epath` picks the backend per path (local files without TensorFlow; `gs://` through
`tf.io.gfile` or fsspec). Paths may also be given as `file://...`, which epath does not
know: the prefix is dropped.

Every writer of the package (checkpoints, metrics, TensorBoard events, configs, results,
exports, figures, downloads) reports a write the storage refuses (full disk, quota, read-only
file system, no permission) as `WriteError`, an `OSError` whose message is one line: what could
not be written, where, the space it needs and the space free, and what to do. `storage_errno`
recognises such a failure in Python's `OSError`, in TensorFlow's errors and in tensorstore's
(orbax's) status texts. `atomic_output` / `write_atomic` write a temporary file and rename it,
so a failed write leaves the previous file as it was and no partial one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import IO

from etils import epath

# The refusals a writer reports as WriteError, and how the message says them.
STORAGE_ERRNOS = {
    errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'the disk quota is exceeded',
    errno.EROFS: 'the file system is read-only', errno.EACCES: 'permission denied',
    errno.EPERM: 'operation not permitted'}
DEFAULT_REMEDY = 'Free space on that disk, or write to another directory.'
_TENSORSTORE_CODE = re.compile(r"os_error_code='?(\d+)")  # tensorstore's status payload
# Temporary files being written right now: an exit that skips `finally` blocks (the start-up
# Ctrl-C handler, training/preemption.py) removes them.
PARTIAL_FILES: set[str] = set()


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


def format_bytes(n: float) -> str:
  """`3.1 MiB`-style size (binary units, as `df -h`)."""
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
    if abs(n) < 1024 or unit == 'TiB':
      return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
    n /= 1024
  raise AssertionError('unreachable')


def free_bytes(path: str) -> int | None:
  """Bytes an unprivileged write may still use on the file system of local `path` (or None)."""
  if not is_local(path):
    return None
  path = absolute(path)
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path or '/').free
  except OSError:
    return None


def storage_errno(error: BaseException | None) -> int | None:
  """The errno of a refused write (`STORAGE_ERRNOS`) in `error` or its causes, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    code = getattr(error, 'errno', None)
    if isinstance(error, OSError) and code in STORAGE_ERRNOS:
      return code
    text = str(error)
    match = _TENSORSTORE_CODE.search(text)
    if match and int(match.group(1)) in STORAGE_ERRNOS:
      return int(match.group(1))
    for code in STORAGE_ERRNOS:  # TensorFlow: '...; No space left on device'
      if os.strerror(code) in text:
        return code
    error = error.__cause__ or error.__context__
  return None


class WriteError(OSError):
  """The storage refused a write (full, quota, read-only, no permission); one-line message.

  Attributes: `what`, `path`, `errno`, `needed` / `free` (bytes, None if unknown), `note`
  (what state the failure left) and `remedy` (what to do).
  """

  def __init__(self, *, what: str, path: str, code: int, needed: int | None = None,
               free: int | None = None, note: str = '', remedy: str = DEFAULT_REMEDY):
    self.what, self.path, self.needed, self.free = what, path, needed, free
    self.note, self.remedy = note, remedy
    super().__init__(self._message(code))
    self.errno = code

  def _message(self, code: int) -> str:
    space = []
    if code in (errno.ENOSPC, errno.EDQUOT):
      if self.needed:
        space.append(f'it needs ~{format_bytes(self.needed)}')
      if self.free is not None and code == errno.ENOSPC:
        space.append(f'{format_bytes(self.free)} free')
    text = f'Cannot write {self.what} to {self.path}: {STORAGE_ERRNOS[code]}'
    text += f' ({", ".join(space)}).' if space else '.'
    return ' '.join(t for t in (text, self.note, self.remedy) if t)

  def __str__(self) -> str:
    return self.args[0]

  def __reduce__(self):
    return _rebuild, (self.what, self.path, self.errno, self.needed, self.free, self.note,
                      self.remedy)

  def with_remedy(self, remedy: str, note: str | None = None) -> WriteError:
    """The same error with the caller's `remedy` (and `note`): it knows what the user runs."""
    return WriteError(what=self.what, path=self.path, code=self.errno, needed=self.needed,
                      free=self.free, note=self.note if note is None else note, remedy=remedy)


def _rebuild(*fields) -> WriteError:
  what, path, code, needed, free, note, remedy = fields
  return WriteError(what=what, path=path, code=code, needed=needed, free=free, note=note,
                    remedy=remedy)


def write_error(error: BaseException, *, what: str, path: str, needed: int | None = None,
                note: str = '', remedy: str | None = None) -> WriteError | None:
  """`error` (raised writing `what` to `path`) as a WriteError, or None if no storage refusal.

  A WriteError from deeper down keeps its details and takes this caller's `remedy`.
  """
  if isinstance(error, WriteError):
    return error.with_remedy(remedy) if remedy else error
  code = storage_errno(error)
  if code is None:
    return None
  return WriteError(what=what, path=path, code=code, needed=needed, free=free_bytes(path),
                    note=note, remedy=remedy or DEFAULT_REMEDY)


@contextlib.contextmanager
def writing(what: str, path: str, *, needed: int | None = None, note: str = '',
            remedy: str | None = None) -> Iterator[None]:
  """Turns a refused write inside the block into `WriteError` (other errors pass unchanged)."""
  try:
    yield
  except Exception as e:
    error = write_error(e, what=what, path=path, needed=needed, note=note, remedy=remedy)
    if error is None or error is e:
      raise
    raise error from e


def _new_file(directory: str, name: str) -> tuple[int, str]:
  """A new, empty, uniquely named file next to `name`; mode 0666 minus the umask."""
  while True:
    path = os.path.join(directory, f'.{name}.tmp-{secrets.token_hex(6)}')
    with contextlib.suppress(FileExistsError):
      return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path


@contextlib.contextmanager
def atomic_output(path: str, *, what: str, needed: int | None = None,
                  remedy: str | None = None) -> Iterator[IO[bytes]]:
  """A binary file that replaces `path` only when the block succeeds (temp file + rename).

  Local paths: written next to `path`, fsynced, renamed; on any failure the temporary file is
  removed and `path` is untouched. Object stores publish the object whole when it is closed.
  A refused write raises WriteError naming `what` and `needed` bytes.
  """
  with writing(what, path, needed=needed, remedy=remedy):
    if not is_local(path):
      buffer = io.BytesIO()
      yield buffer
      with open_file(path, 'wb') as f:
        f.write(buffer.getvalue())
      return
    path = absolute(path)
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _new_file(directory, name)
    PARTIAL_FILES.add(tmp)
    try:
      with os.fdopen(fd, 'wb') as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise
    finally:
      PARTIAL_FILES.discard(tmp)


def write_atomic(path: str, data: str | bytes, *, what: str, remedy: str | None = None) -> None:
  """Writes `data` to `path` whole or not at all (`atomic_output`)."""
  data = data.encode() if isinstance(data, str) else data
  with atomic_output(path, what=what, needed=len(data), remedy=remedy) as f:
    f.write(data)
