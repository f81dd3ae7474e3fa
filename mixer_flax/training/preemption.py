"""SIGTERM (preemption) and Ctrl-C as a flag the training loop polls between steps."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class PreemptionSignal:
  """Turns SIGTERM (preemption) and SIGINT (Ctrl-C) into a flag the loop polls between steps.

  The loop then saves a checkpoint and returns. The first SIGINT also restores the default
  SIGINT action, so a second Ctrl-C ends the process at once (the newest checkpoint stays
  intact: saves are atomic). Used as a context manager; the previous handlers are restored on
  exit. Outside the main thread (where handlers cannot be installed) it is a no-op flag.
  """

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
    self.signals = signals
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def _handler(self, signum, frame):
    del frame
    self.received = signum
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      # os.write: safe inside a signal handler (print could re-enter a buffered write).
      os.write(2, b'\nCtrl-C: saving a checkpoint after this step, then exiting. Press '
                  b'Ctrl-C again to stop at once without saving.\n')

  @property
  def name(self) -> str | None:
    """'SIGTERM' / 'SIGINT' once a signal was received."""
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
