"""How every command line reports a failure: one line on stderr, a non-zero exit status.

`python -m mixer_flax.main`, `python -m mixer_flax.transfer` and every `scripts/*.py` run their
`main(argv)` through `command` (or `invoke`). Library code raises an ordinary exception whose
message names the thing that is wrong and what to do; this module turns the expected ones
(`EXPECTED`: OSError, ValueError, FloatingPointError, RuntimeError and their subclasses, e.g.
`download.DownloadError`, `checkpoint.CheckpointError`) into one line, `error: <message>`,
exit status 1, and Ctrl-C into one line, exit status 130. `--verbose` shows the traceback
instead. Anything else (a bug) keeps its traceback.

A console that goes away (a terminal closed without SIGHUP reaching the run, e.g. a
`disown`ed job; a closed pipe) stops the output, not the run: `invoke` points stdout and
stderr at /dev/null on the first EIO/EPIPE, as `nohup` would, and the run goes on writing its
files (SIGHUP itself saves and stops: `training/preemption.py`).

`quiet(verbose)` silences library INFO logging (JAX's backend probing, tfds' reader lines,
clu's copy of every progress line) and `import_tensorflow()` TensorFlow's start-up notices,
unless `--verbose`. Stdlib only: `--help` of a script answers before JAX or TensorFlow load.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT: the shell's status for a job stopped by Ctrl-C
# Errors a user can cause (bad input, files, data, a non-finite loss): one line unless --verbose.
EXPECTED = (OSError, ValueError, FloatingPointError, RuntimeError)
VERBOSE_FLAG = '--verbose'
VERBOSE_HELP = 'show library log messages and the traceback of an error'
# C++ start-up notices TensorFlow writes to stderr on import (no setting turns them off).
_TF_NOTICES = ('All log messages before absl::InitializeLog()', 'oneDNN custom operations',
               'cpu_feature_guard', 'To enable the following instructions')

# Library warnings that say nothing to a user of these commands: tfds' note on every
# dataset it looks up before it is prepared.
_LOG_NOTICES = ('Variant folder ',)

F = TypeVar('F', bound=Callable[..., Any])
# A write to a console that is gone: a hung-up terminal (EIO, ENXIO), a closed pipe (EPIPE).
_CONSOLE_LOST = (errno.EIO, errno.ENXIO, errno.EPIPE)


class _DropNotices(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_LOG_NOTICES)


def one_line(error: BaseException) -> str:
  """The error's message on one line, the type name if it has none.

  Lines are joined with '; ' (a list, e.g. the changed settings of a workdir), or a space
  after a line that ends a sentence or clause.
  """
  text = ''
  for line in (line.strip() for line in str(error).splitlines()):
    if line:
      text += ('' if not text else ' ' if text.endswith(('.', ':', ';', ',')) else '; ') + line
  return text or type(error).__name__


def fail(message: str, status: int = EXIT_ERROR) -> NoReturn:
  """Prints `error: message` on stderr and exits with `status`."""
  with survive_lost_console():
    sys.stdout.flush()
    print(f'error: {message}', file=sys.stderr, flush=True)
  raise SystemExit(status)


def invoke(fn: Callable[..., Any], *args: Any, verbose: bool = False, **kwargs: Any) -> Any:
  """`fn(*args, **kwargs)` with expected failures reported by `fail` (re-raised if verbose)."""
  try:
    with survive_lost_console():
      return fn(*args, **kwargs)
  except KeyboardInterrupt:
    if verbose:
      raise
    fail('interrupted (Ctrl-C).', EXIT_INTERRUPTED)
  except EXPECTED as e:
    if verbose:
      raise
    fail(one_line(e))


class _Console:
  """A text stream whose writes survive the loss of its console (then they go nowhere)."""

  def __init__(self, stream: Any):
    self._stream = stream
    self._lost = False

  def _call(self, method: str, *args: Any) -> Any:
    if not self._lost:
      try:
        return getattr(self._stream, method)(*args)
      except OSError as e:
        if e.errno not in _CONSOLE_LOST:
          raise
        self._lost = True
        _drop_console(self._stream)
    return len(args[0]) if args else None

  def write(self, text: str) -> int:
    return self._call('write', text)

  def flush(self) -> None:
    self._call('flush')

  def __getattr__(self, name: str) -> Any:
    return getattr(self._stream, name)


def detach_console(which: Callable[[os.stat_result], bool]) -> None:
  """Points descriptors 1 and 2 (C++ writers too) at /dev/null where `which(their stat)`.

  Plain os calls only: safe in a signal handler.
  """
  with contextlib.suppress(OSError):
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
      with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if not os.path.samestat(st, os.fstat(null)) and which(st):
          os.dup2(null, fd)
    os.close(null)


def _drop_console(stream: Any) -> None:
  """Points every standard descriptor on `stream`'s lost console at /dev/null."""
  with contextlib.suppress(OSError, ValueError):
    lost = os.fstat(stream.fileno())
    detach_console(lambda st: os.path.samestat(st, lost))
  with contextlib.suppress(OSError, ValueError):
    stream.flush()  # what was pending goes to /dev/null now


@contextlib.contextmanager
def survive_lost_console():
  """Within the block, a write to a console that is gone drops the output, not the run."""
  saved = sys.stdout, sys.stderr
  sys.stdout, sys.stderr = _Console(sys.stdout), _Console(sys.stderr)
  try:
    yield
  finally:
    sys.stdout, sys.stderr = saved


_verbose = [False]  # the command's --verbose, as `quiet` was told


def quiet(verbose: bool) -> None:
  """Library logging at WARNING (INFO with `verbose`); call before JAX/TensorFlow start."""
  _verbose[0] = verbose
  level = logging.INFO if verbose else logging.WARNING
  if not verbose:  # the C++ INFO and WARNING lines of jaxlib and TensorFlow (e.g. an offline
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # gs:// credentials probe); errors stay
  logging.getLogger().setLevel(level)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top  (tfds, clu)
  absl_logging.set_verbosity(absl_logging.INFO if verbose else absl_logging.WARNING)
  absl_logger = logging.getLogger('absl')
  for f in [f for f in absl_logger.filters if isinstance(f, _DropNotices)]:
    absl_logger.removeFilter(f)
  if not verbose:
    absl_logger.addFilter(_DropNotices())


def import_tensorflow() -> Any:
  """Imports TensorFlow, dropping its C++ start-up notices unless `quiet(verbose=True)`."""
  if _verbose[0] or 'tensorflow' in sys.modules:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf
  with tempfile.TemporaryFile(mode='w+b') as captured:
    try:
      with _stderr_to(captured):
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
    finally:  # what else TensorFlow said (e.g. why the import failed) is passed on
      captured.seek(0)
      lines = captured.read().decode(errors='replace').splitlines(keepends=True)
      sys.stderr.write(''.join(line for line in lines
                               if not any(notice in line for notice in _TF_NOTICES)))
  return tf


def command(fn: F) -> F:
  """Decorates a command line's `main(argv=None)`: `--verbose`, `quiet`, `invoke`.

  `--verbose` is taken out of argv (or of `sys.argv` when argv is None, which `fn` then
  still gets) before `fn` parses it, so every command accepts it.
  """
  @functools.wraps(fn)
  def wrapper(argv: Sequence[str] | None = None, *args: Any, **kwargs: Any) -> Any:
    given = sys.argv[1:] if argv is None else list(argv)
    verbose = VERBOSE_FLAG in given
    rest = [a for a in given if a != VERBOSE_FLAG]
    if argv is None:
      sys.argv[1:] = rest
    quiet(verbose)
    return invoke(fn, None if argv is None else rest, *args, verbose=verbose, **kwargs)
  return wrapper  # type: ignore[return-value]


def console_fd() -> int:
  """Where a signal handler's one line goes: 2, or the console while `_stderr_to` captures 2."""
  return _console_fd[0]


_console_fd = [2]


@contextlib.contextmanager
def _stderr_to(target):
  """Points file descriptor 2 (where C++ libraries write) at `target` for the block."""
  sys.stderr.flush()
  saved = os.dup(2)
  _console_fd[0] = saved
  try:
    os.dup2(target.fileno(), 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    _console_fd[0] = 2  # after the dup2: a handler in between still reaches the console
    os.close(saved)
