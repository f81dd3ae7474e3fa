"""A directory whose disk fills up on demand: a real tmpfs, or ENOSPC injected at the write calls.

`Disk.fill(leave=N)` leaves N bytes writable, `Disk.free()` gives the space back.

* `TmpfsDisk`: a tmpfs mounted on the directory (root with mount rights only, see
  `can_mount`); `fill` writes a filler file, so every writer (Python, tensorstore's C++,
  TensorFlow's event writer) meets the kernel's own ENOSPC.
* `InjectedDisk`: a plain directory; the lowest write calls (`os.write`, files opened for
  writing through `open` / `os.fdopen`, orbax's tensorstore write, TensorFlow's event-file
  flush) share a byte budget for paths under it and fail as their real counterparts do:
  `OSError(ENOSPC)`, tensorstore's `ValueError('RESOURCE_EXHAUSTED ... [os_error_code=28]')`,
  TensorFlow's `ResourceExhaustedError('...; No space left on device')`. With `block`, an
  append that fits its file's last block needs no new space, as on a real file system: a
  metrics line or event written while a checkpoint fills the disk does not race it.
"""

import builtins
import errno
import functools
import json
import os
import shutil
import subprocess
import threading

from clu.metric_writers.tf import summary_writer
from orbax.checkpoint._src.serialization import type_handlers


def enospc() -> OSError:
  return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@functools.cache
def can_mount() -> bool:
  """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, e.g. not in most CI)."""
  if os.geteuid() != 0 or not shutil.which('mount'):
    return False
  probe = f'/tmp/mixer_flax_mount_probe_{os.getpid()}'
  os.makedirs(probe, exist_ok=True)
  try:
    ok = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe],
                        capture_output=True).returncode == 0
    if ok:
      subprocess.run(['umount', probe], check=True)
    return ok
  finally:
    os.rmdir(probe)


class TmpfsDisk:
  """A `size`-byte tmpfs mounted on `path`."""

  def __init__(self, path: str, size: int):
    self.path = path
    os.makedirs(path, exist_ok=True)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', path], check=True)
    self._filler = os.path.join(path, 'filler')

  def fill(self, leave: int = 0) -> None:
    with open(self._filler, 'ab') as f:
      room = shutil.disk_usage(self.path).free - leave
      try:
        while room > 0:
          room -= f.write(b'\0' * min(room, 1 << 16))
          f.flush()
      except OSError:
        pass

  def free(self) -> None:
    os.remove(self._filler)

  def close(self) -> None:
    subprocess.run(['umount', '-l', self.path], check=True)


class InjectedDisk:
  """ENOSPC for writes under `path` once `fill` was called (see the module doc)."""

  def __init__(self, path: str, monkeypatch, *, block: int = 0):
    """`block`: > 0 frees an `os.write` append that fits the file's last block, as a kernel
    does (a metrics line after a full checkpoint); 0 charges every byte."""
    self.path = os.path.realpath(path)
    self.block = block
    os.makedirs(self.path, exist_ok=True)
    self.left: int | None = None  # bytes still writable; None: not full
    self._lock = threading.Lock()
    self._patch(monkeypatch)

  def fill(self, leave: int = 0) -> None:
    self.left = leave

  def free(self) -> None:
    self.left = None

  def close(self) -> None:
    pass

  def take(self, n: int, *, whole: bool = False) -> int:
    """Bytes of an `n`-byte write that fit (all when not full); ENOSPC when none does.

    Like the kernel: a write that only partly fits is short, the next one fails. `whole`:
    all or nothing, as a refused tensorstore chunk whose partial file orbax then deletes.
    """
    with self._lock:
      if self.left is None:
        return n
      if n and (not self.left or whole and n > self.left):
        raise enospc()
      fits = min(n, self.left)
      self.left -= fits
      return fits

  def slack(self, prefix: str) -> int:
    """Free bytes in the last block of the newest file under the disk named `prefix`*."""
    if not self.block:
      return 0
    files = [os.path.join(d, n) for d, _, names in os.walk(self.path) for n in names
             if n.startswith(prefix)]
    return -os.path.getsize(max(files, key=os.path.getmtime)) % self.block if files else 0

  def _ours(self, target) -> bool:
    try:
      path = os.readlink(f'/proc/self/fd/{target}') if isinstance(target, int) else target
      return os.path.realpath(os.fspath(path)).startswith(self.path + os.sep)
    except (OSError, TypeError):
      return False

  def _patch(self, mp) -> None:
    disk = self
    real_write, real_fdopen, real_open = os.write, os.fdopen, builtins.open
    real_ts_write = type_handlers.NumpyHandler._open_and_write
    real_flush = summary_writer.SummaryWriter.flush

    def write(fd, data):
      if disk._ours(fd):
        slack = -os.fstat(fd).st_size % disk.block if disk.block else 0
        data = memoryview(data)
        if len(data) > slack:
          try:
            data = data[:slack + disk.take(len(data) - slack)]
          except OSError:
            if not slack:
              raise
            data = data[:slack]  # short, like the kernel: the next write fails
      return real_write(fd, data)

    def wrap(f, target, mode):
      writing = any(c in str(mode) for c in 'wax+')
      return _Budgeted(f, disk) if writing and disk._ours(target) else f

    def fdopen(fd, mode='r', *args, **kwargs):
      return wrap(real_fdopen(fd, mode, *args, **kwargs), fd, mode)

    def open_(file, mode='r', *args, **kwargs):
      return wrap(real_open(file, mode, *args, **kwargs), file, mode)

    async def ts_write(self, value, tspec, ts_context):
      if disk.path in json.dumps(tspec, default=str):
        try:
          disk.take(value.nbytes, whole=True)
        except OSError:
          raise ValueError(f'RESOURCE_EXHAUSTED: Failed to write {value.nbytes} bytes: No space '
                           "left on device [os_error_code='28']") from None
      return await real_ts_write(self, value, tspec, ts_context)

    def flush(self):
      if disk.left is not None and disk.left < 100 and disk.slack('events.out.tfevents') < 100:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        raise tf.errors.ResourceExhaustedError(
            None, None, f'{disk.path}/events.out.tfevents; No space left on device')
      return real_flush(self)

    mp.setattr(os, 'write', write)
    mp.setattr(os, 'fdopen', fdopen)
    mp.setattr(builtins, 'open', open_)
    mp.setattr(type_handlers.NumpyHandler, '_open_and_write', ts_write)
    mp.setattr(summary_writer.SummaryWriter, 'flush', flush)


class _Budgeted:
  """A file object whose writes draw on the disk's budget."""

  def __init__(self, f, disk: InjectedDisk):
    self._f, self._disk = f, disk

  def write(self, data):
    fits = self._disk.take(len(data))
    self._f.write(data[:fits])
    if fits < len(data):
      self._f.flush()
      raise enospc()
    return fits

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __iter__(self):
    return iter(self._f)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


def make_disk(kind: str, root: str, monkeypatch, size: int = 1 << 20):
  """A `TmpfsDisk` ('tmpfs': skips the test where mounting is refused) or an `InjectedDisk`."""
  import pytest  # pylint: disable=g-import-not-at-top
  if kind == 'tmpfs' and not can_mount():
    pytest.skip('cannot mount a tmpfs here (not root with mount rights): injected only')
  path = os.path.join(root, 'disk')
  return TmpfsDisk(path, size) if kind == 'tmpfs' else InjectedDisk(path, monkeypatch, block=4096)
