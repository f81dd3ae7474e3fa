"""Silences orbax's and tensorstore's own console copies of an error the caller reports.

A checkpoint write refused by a full disk makes orbax log the error at ERROR level, with a
traceback, from each of its writer threads, and tensorstore callbacks that fire after orbax
closed its event loop print 'Event loop is closed' tracebacks (through `sys.unraisablehook`),
and asyncio logs 'Task exception was never retrieved' for each array write that failed with
it: over a thousand lines for one error. `Checkpoints` (save) and `resume` (restore) turn every
such failure into an exception with one line, so these copies are dropped. orbax's warnings
still print, and absl's `--verbosity=1` shows its ERROR logs again.
"""

from __future__ import annotations

import logging
import sys


class _OrbaxErrors(logging.Filter):
  """Drops ERROR records of orbax (absl's logger) unless absl's verbosity is DEBUG."""

  def filter(self, record: logging.LogRecord) -> bool:
    from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
    return (record.levelno < logging.ERROR or '/orbax/' not in record.pathname
            or absl_logging.level_debug())


class _OrbaxTasks(logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' for orbax's own write tasks."""

  def filter(self, record: logging.LogRecord) -> bool:
    text = str(record.msg)
    return not (text.startswith('Task exception was never retrieved') and '/orbax/' in text)


def _unraisable_hook(previous):
  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and 'Event loop is closed' in str(unraisable.exc_value)):
      previous(unraisable)
  hook.mixer_flax_quiet_orbax = True
  return hook


def quiet() -> None:
  """Installs the filters (idempotent; process-wide, like orbax's logging itself)."""
  absl_logger = logging.getLogger('absl')
  if not any(isinstance(f, _OrbaxErrors) for f in absl_logger.filters):
    absl_logger.addFilter(_OrbaxErrors())
  asyncio_logger = logging.getLogger('asyncio')
  if not any(isinstance(f, _OrbaxTasks) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_OrbaxTasks())
  if not getattr(sys.unraisablehook, 'mixer_flax_quiet_orbax', False):
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
