"""Signals: saved at a step boundary during training, a clean one-line exit before and after.

* During the step loop, `PreemptionSignal` turns SIGTERM (preemption), SIGHUP (the terminal
  was closed) and SIGINT (Ctrl-C) into a flag the loop polls between steps; the loop then
  saves a checkpoint and returns.
* Outside it (start-up: imports, data checks, restore; the end: final files), there is no
  step to stop at and nothing new to save: `exit_on_interrupt` (installed by `main.py`) ends
  the process at once with one line, after removing the workdir lock and any partial file
  (`fileio.PARTIAL_FILES`). It never raises KeyboardInterrupt, which Python could deliver
  inside a garbage-collector callback (swallowed: the run went on) or leave to an interpreter
  shutdown with TensorFlow threads running (a segmentation fault).

Exit status: 128 + the signal, the shell's convention (130 for Ctrl-C, 129 for SIGHUP), so
`train && next` stops; SIGTERM after its checkpoint: 0 (a preempted job rerun by its scheduler).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable
from typing import Any

from mixer_flax import entry, fileio

EXIT_STATUS = {'SIGINT': 128 + signal.SIGINT, 'SIGHUP': 128 + signal.SIGHUP}
_CLEANUPS: list[Callable[[], None]] = []  # run by a hard exit (the workdir lock's release)
_exit_note = ['during start-up; nothing to save.']


def _detach_terminal() -> None:
  """Points stdout / stderr at /dev/null if they are a terminal: a hung-up one fails writes.

  (A hung-up terminal no longer answers `isatty`; a character device other than /dev/null
  is one.)
  """
  entry.detach_console(lambda st: stat.S_ISCHR(st.st_mode))


class PreemptionSignal:
  """SIGTERM, SIGHUP and SIGINT as a flag the training loop polls between steps.

  The loop then saves a checkpoint and returns. The first SIGINT also restores the default
  SIGINT action, so a second Ctrl-C ends the process at once (the newest checkpoint stays
  intact: saves are atomic); SIGHUP detaches the lost terminal. Used as a context manager;
  the previous handlers are restored on exit. Outside the main thread (where handlers cannot
  be installed) it is a no-op flag.
  """

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
    self.signals = signals
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def _handler(self, signum, frame):
    del frame
    self.received = signum
    if signum == signal.SIGHUP:
      _detach_terminal()
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      # os.write: safe inside a signal handler (print could re-enter a buffered write).
      with contextlib.suppress(OSError):
        os.write(2, b'\nCtrl-C: saving a checkpoint after this step, then exiting. Press '
                    b'Ctrl-C again to stop at once without saving.\n')

  @property
  def name(self) -> str | None:
    """'SIGTERM' / 'SIGINT' / 'SIGHUP' once a signal was received."""
    return signal.Signals(self.received).name if self.received is not None else None

  def __enter__(self) -> PreemptionSignal:
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}


def _exit_now(signum, frame) -> None:
  """Ends the process at once: one line, lock and partial files removed, status 128 + signum."""
  del frame
  if signum == signal.SIGHUP:
    _detach_terminal()
  with contextlib.suppress(Exception):
    sys.stdout.flush()
  with contextlib.suppress(OSError):
    what = 'Interrupted (Ctrl-C)' if signum == signal.SIGINT else signal.Signals(signum).name
    os.write(entry.console_fd(), f'\n{what} {_exit_note[0]}\n'.encode())
  for cleanup in reversed(_CLEANUPS):
    with contextlib.suppress(Exception):
      cleanup()
  for path in list(fileio.PARTIAL_FILES):
    with contextlib.suppress(OSError):
      os.remove(path)
  os._exit(128 + signum)


def exit_on_interrupt(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGHUP)) -> None:
  """Makes `signals` end the process at once with one line (command lines, main thread)."""
  for s in signals:
    signal.signal(s, _exit_now)


def set_exit_note(text: str) -> None:
  """What the one line of `exit_on_interrupt` says after 'Interrupted (Ctrl-C)'."""
  _exit_note[0] = text


def on_exit_now(cleanup: Callable[[], None]) -> Callable[[], None]:
  """Runs `cleanup` if `exit_on_interrupt` ends the process; returns the unregistering call."""
  _CLEANUPS.append(cleanup)
  return lambda: _CLEANUPS.remove(cleanup) if cleanup in _CLEANUPS else None
