"""One run per workdir: an exclusive lock file with the holder's host, pid and start time.

`WorkdirLock(workdir).acquire()` creates `workdir/lock.json` with `O_CREAT | O_EXCL` (one
creator succeeds) holding {host, pid, boot_id, proc_start, started, token, command}; while
held, a thread refreshes its mtime every `HEARTBEAT_S` s; `release()` removes it.

A lock left behind by a run that died without cleaning up (kill -9, machine lost) is
*stale* and is taken over (with a warning) when:

* same machine (same hostname and kernel boot id): the holder's pid no longer runs, or now
  belongs to another process (its start time in /proc differs from the recorded one);
* another machine: its heartbeat is older than `STALE_AFTER_S` (10 heartbeats). A live
  holder beats even while compiling or evaluating (a thread), so 10 missed beats mean its
  machine is gone or hung. The mtime is compared with this host's clock: hosts whose clocks
  differ by minutes (no NTP) can misjudge; then delete the lock by hand.

Takeover is race-free: the stale file is renamed away (atomic: one starter wins) and checked
to be the one judged stale before it is deleted; then the starter competes for a new lock.

Object stores (`gs://`) have no exclusive create: there the lock is written, read back and
kept only if it still holds our token, which narrows but does not close the race of two
runs started within the same second; the heartbeat rewrites the file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from mixer_flax import fileio

LOCK_FILE = 'lock.json'
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


class WorkdirError(RuntimeError):
  """The workdir cannot be used as asked (message: the cause and what to do)."""


class WorkdirLocked(WorkdirError):
  """Another live run holds the workdir's lock."""


def _read_text(path: str) -> str | None:
  try:
    with fileio.open_file(path) as f:
      return f.read()
  except FileNotFoundError:
    return None
  except Exception as e:  # tf.errors.NotFoundError on object stores
    if type(e).__name__ != 'NotFoundError':
      raise
    return None


def _boot_id() -> str:
  path = '/proc/sys/kernel/random/boot_id'  # Linux: changes at every boot
  return open(path).read().strip() if os.path.exists(path) else ''


def _proc_start(pid: int) -> int | None:
  """Start time of `pid` in clock ticks since boot (Linux), None if unknown."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return int(f.read().rsplit(')', 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def _pid_alive(pid: int, proc_start: int | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    pass
  now = _proc_start(pid)
  return proc_start is None or now is None or now == proc_start


def _describe(holder: dict[str, Any], age_s: float) -> str:
  started = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(holder.get('started', 0)))
  return (f'pid {holder.get("pid")} on host {holder.get("host")}, started {started}, '
          f'last heartbeat {age_s:.0f} s ago')


class WorkdirLock:
  """The lock of one workdir (see the module doc); a context manager."""

  def __init__(self, workdir: str):
    self.path = fileio.join(workdir, LOCK_FILE)
    self.local = fileio.is_local(self.path)
    self.me = dict(host=socket.gethostname(), pid=os.getpid(), boot_id=_boot_id(),
                   proc_start=_proc_start(os.getpid()), started=time.time(),
                   token=uuid.uuid4().hex, command=' '.join(sys.argv)[:1000])
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self.took_over: str | None = None  # why a stale lock was replaced, if one was

  def _age(self) -> float:
    if self.local:
      return time.time() - os.stat(fileio.absolute(self.path)).st_mtime
    return time.time() - fileio.path_of(self.path).stat().mtime

  def _read(self) -> tuple[dict[str, Any] | None, float]:
    """(holder, heartbeat age in s); holder {} if unreadable, None if there is no lock."""
    text = _read_text(self.path)
    if text is None:
      return None, 0.0
    try:
      holder = json.loads(text)
      holder = holder if isinstance(holder, dict) else {}
    except json.JSONDecodeError:
      holder = {}  # torn write of a crashed creator, or not ours
    try:
      return holder, self._age()
    except (FileNotFoundError, OSError):
      return None, 0.0

  def stale_reason(self, holder: dict[str, Any], age_s: float) -> str | None:
    """Why `holder`'s lock is stale, or None while it may still be running."""
    same_machine = (holder.get('host') == self.me['host']
                    and holder.get('boot_id', '') == self.me['boot_id'])
    pid = holder.get('pid')
    if same_machine and isinstance(pid, int):
      if not _pid_alive(pid, holder.get('proc_start')):
        return f'its process {pid} no longer runs on this host'
      return None
    if age_s > STALE_AFTER_S:
      return f'its heartbeat stopped {age_s / 60:.0f} min ago (limit {STALE_AFTER_S / 60:.0f} min)'
    return None

  def _create(self) -> None:
    """Creates the lock exclusively; FileExistsError if any lock exists."""
    text = json.dumps(self.me)
    if self.local:
      path = fileio.absolute(self.path)
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      try:
        with fileio.writing('the lock', path, needed=len(text)), os.fdopen(fd, 'w') as f:
          f.write(text)
          f.flush()
          os.fsync(f.fileno())
      except BaseException:
        os.remove(path)  # a torn lock would block the next run until it counts as stale
        raise
      return
    if _read_text(self.path) is not None:
      raise FileExistsError(self.path)
    with fileio.open_file(self.path, 'w') as f:
      f.write(text)
    if (self._read()[0] or {}).get('token') != self.me['token']:
      raise FileExistsError(self.path)  # another starter wrote after us: theirs

  def _remove_stale(self, holder: dict[str, Any]) -> None:
    """Removes the stale lock of `holder`, never a lock created since it was judged."""
    if not self.local:
      return self._remove()
    path = fileio.absolute(self.path)
    moved = f'{path}.stale-{self.me["token"]}'
    try:
      os.rename(path, moved)
    except FileNotFoundError:
      return  # another starter removed it first
    with open(moved) as f:
      text = f.read()
    try:
      same = json.loads(text).get('token') == holder.get('token')
    except (json.JSONDecodeError, AttributeError):  # unreadable: stale only if judged so
      same = not holder
    if not same:  # a concurrent starter's fresh lock: put it back
      try:
        os.link(moved, path)
      finally:
        os.remove(moved)
      raise WorkdirLocked(f'Another run is starting in this workdir at the same time '
                          f'(lock {self.path}); start one run per workdir.')
    os.remove(moved)

  def acquire(self) -> WorkdirLock:
    """Takes the lock or raises `WorkdirLocked` naming the holder."""
    for _ in range(5):
      try:
        self._create()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name='workdir-lock-heartbeat')
        self._thread.start()
        return self
      except FileExistsError:
        pass
      holder, age = self._read()
      if holder is None:
        continue  # released meanwhile: try again
      reason = self.stale_reason(holder, age)
      if reason is None:
        raise WorkdirLocked(
            f'{os.path.dirname(self.path)} is in use by another run ({_describe(holder, age)}; '
            f'lock {self.path}). Wait for it to finish or stop it, or use another --workdir. '
            f'If that run is gone for good, delete {self.path}.')
      self._remove_stale(holder)
      self.took_over = f'took over the stale lock of {_describe(holder, age)}: {reason}'
    raise WorkdirLocked(f'Could not take the lock {self.path} (several runs are starting in '
                        'this workdir at once?); start one run per workdir.')

  def _heartbeat(self) -> None:
    warned = False
    while not self._stop.wait(HEARTBEAT_S):
      try:
        holder, _ = self._read()
        if (holder or {}).get('token') != self.me['token']:
          if not warned:
            logging.error('The lock %s is no longer held by this run (taken over as stale?); '
                          'another run may now write the same workdir.', self.path)
          warned = True
        elif self.local:
          os.utime(fileio.absolute(self.path))
        else:
          with fileio.open_file(self.path, 'w') as f:
            f.write(json.dumps(self.me))
      except Exception as e:  # a transient file-system error must not kill the run
        logging.warning('Lock heartbeat of %s failed: %s', self.path, e)

  def release(self) -> None:
    """Stops the heartbeat and removes the lock if it is still ours."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=5)
      self._thread = None
    holder, _ = self._read()
    if holder is not None and holder.get('token') == self.me['token']:
      self._remove()

  def _remove(self) -> None:
    fileio.path_of(fileio.absolute(self.path)).unlink()

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
