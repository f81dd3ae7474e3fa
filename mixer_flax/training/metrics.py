"""Training metrics: clu writers (console + TensorBoard), `metrics.jsonl` and progress lines.

Only the process that owns the writer (process 0 in multi-host runs) writes files;
the others log to their own console through clu's logging writer.

`metrics.jsonl` holds one JSON object per logged step, e.g.
`{"step": 100, "train_loss": 0.41, "learning_rate": 0.001, "img/s": 812.5}`. On a resumed
run, records after the restored step are dropped first, so the file never repeats a step.
A torn last line (a run that died while appending) is dropped with a warning; damage
anywhere else stops the run naming the file and line. A write the disk refuses raises
`fileio.WriteError` (one line) and leaves the earlier lines intact: a failed append is cut
back to the last whole line, the resume-time rewrite replaces the file atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from clu import metric_writers

from mixer_flax import fileio

METRICS_FILE = 'metrics.jsonl'
_EVENT_BYTES = 100  # ~bytes of one scalar in a TensorBoard event file (for the error message)


def read_metrics(workdir: str, *, warn: Callable[[str], None] = logging.warning
                 ) -> list[dict[str, Any]]:
  """Returns the records of `workdir/metrics.jsonl` (empty list if there is none).

  A torn last line (the run died while appending: power loss, full disk) is dropped with a
  warning; any other line that is not a JSON object raises ValueError naming file and line.
  """
  path = fileio.join(workdir, METRICS_FILE)
  if not fileio.exists(path):
    return []
  with fileio.open_file(path) as f:
    lines = f.read().split('\n')
  numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
  records = []
  for i, line in numbered:
    try:
      record = json.loads(line)
      if not isinstance(record, dict):
        raise ValueError('not a JSON object')
    except ValueError as e:
      if i == numbered[-1][0]:
        warn(f'Warning: dropped the torn last line {i} of {path} ({len(line)} characters '
             'that are not a JSON record, written when an earlier run stopped).')
        break
      raise ValueError(f'{path}, line {i}: not a JSON record ({e}); the file is damaged '
                       'before its last line. Repair or delete that line, then rerun.') from e
    records.append(record)
  return records


def format_duration(seconds: float) -> str:
  """Formats seconds as `1h02m03s` / `2m03s` / `3s`."""
  if not math.isfinite(seconds):
    return '?'
  seconds = int(round(max(seconds, 0.0)))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  if h:
    return f'{h}h{m:02d}m{s:02d}s'
  return f'{m}m{s:02d}s' if m else f'{s}s'


class MetricsLogger:
  """Collects the metrics of one step and writes them to every sink.

  Usage: `log(step, train_loss=...)` any number of times for a step, then `flush()`
  (also done automatically when a later step is logged, and by `close()`).

  Args:
    workdir: output directory (TensorBoard events and `metrics.jsonl` go there).
    total_steps: the run's last step, for the ETA.
    write_files: False on processes other than 0: console logging only.
    resume_step: the step a resumed run restarts from; `metrics.jsonl` records with a
      larger step are removed (they were logged after the last checkpoint).
    printer: callable for the human-readable progress lines (default `print`).
  """

  def __init__(self, *, workdir: str, total_steps: int, write_files: bool,
               resume_step: int = 0, printer=print):
    self.total_steps = total_steps
    self.write_files = write_files
    self._printer = printer
    self._pending_step: int | None = None
    self._pending: dict[str, float] = {}
    self._workdir = workdir
    self._path = fileio.join(workdir, METRICS_FILE)
    self._records: list[dict[str, Any]] = []  # kept for object stores (no append there)
    if write_files:
      fileio.makedirs(workdir)
      self._records = [r for r in read_metrics(workdir, warn=self.message)
                       if r.get('step', 0) <= resume_step]
      self._rewrite()
      with self._events(1):
        self._writer = metric_writers.create_default_writer(workdir, asynchronous=False)
    else:
      self._writer = metric_writers.create_default_writer(just_logging=True, asynchronous=False)
    self._timer_step: int | None = None
    self._timer_t = 0.0

  def log(self, step: int, **metrics: float) -> None:
    """Adds scalar metrics for `step` (floats; names may contain '/')."""
    if self._pending_step is not None and step != self._pending_step:
      self.flush()
    self._pending_step = step
    self._pending.update({k: float(v) for k, v in metrics.items()})

  def flush(self) -> None:
    """Writes the pending step's metrics to clu writers and `metrics.jsonl`."""
    if self._pending_step is None:
      return
    step, scalars = self._pending_step, self._pending
    self._pending_step, self._pending = None, {}
    with self._events(len(scalars)):
      self._writer.write_scalars(step, scalars)
    if self.write_files:
      record = {'step': step, **{k: _json_number(v) for k, v in scalars.items()}}
      self._records.append(record)
      if fileio.is_local(self._path):
        self._append(json.dumps(record) + '\n')
      else:
        self._rewrite()
    with self._events(len(scalars)):
      self._writer.flush()

  def _events(self, count: int):
    return fileio.writing('TensorBoard events', self._workdir, needed=_EVENT_BYTES * count)

  def _append(self, line: str) -> None:
    """Appends one line whole: a failed write is cut back to the previous line's end."""
    data = line.encode()
    with fileio.writing(f'the metrics of step {self._records[-1]["step"]}', self._path,
                        needed=len(data)):
      fd = os.open(fileio.absolute(self._path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
      try:
        end = os.lseek(fd, 0, os.SEEK_END)
        try:
          view = memoryview(data)
          while view:  # unbuffered: nothing is left to flush after a failure
            view = view[os.write(fd, view):]
        except BaseException:
          os.ftruncate(fd, end)
          raise
      finally:
        os.close(fd)

  def _rewrite(self) -> None:
    fileio.write_atomic(self._path, ''.join(json.dumps(r) + '\n' for r in self._records),
                        what='the metrics')

  def start_timer(self, step: int) -> None:
    """Starts the img/s and ETA clock at `step` (call before the first train step)."""
    self._timer_step, self._timer_t = step, time.perf_counter()

  def interval_rate(self, step: int) -> tuple[float, float]:
    """Returns `(seconds per step, seconds elapsed)` since the last call (or start) and resets."""
    now = time.perf_counter()
    steps = max(step - (self._timer_step if self._timer_step is not None else step), 1)
    elapsed = now - self._timer_t
    self._timer_step, self._timer_t = step, now
    return elapsed / steps, elapsed

  def skip_time(self, seconds: float) -> None:
    """Excludes `seconds` (e.g. an evaluation) from the current img/s interval."""
    self._timer_t += seconds

  def progress(self, step: int, *, loss: float, img_per_sec: float, sec_per_step: float,
               extra: str = '') -> None:
    """Prints one progress line: step, loss, img/s and ETA."""
    if not self.write_files:
      return
    eta = format_duration((self.total_steps - step) * sec_per_step)
    width = len(str(self.total_steps))
    self._printer(f'step {step:{width}d}/{self.total_steps}  loss {loss:.4f}  '
                  f'{img_per_sec:8.1f} img/s  ETA {eta}{extra}', flush=True)

  def message(self, text: str) -> None:
    """Prints a line on process 0."""
    if self.write_files:
      self._printer(text, flush=True)

  def close(self) -> None:
    """Flushes and closes every writer."""
    self.flush()
    with self._events(0):
      self._writer.close()

  def abort(self) -> None:
    """`close()` on the way out of a failed run, never raising (the run's error is reported)."""
    for finish in (self.flush, self._writer.close):
      try:
        finish()
      except Exception:  # noqa: BLE001  (e.g. the same full disk again)
        self._pending_step, self._pending = None, {}


def _json_number(value: float) -> float | str:
  """JSON has no NaN/Inf: write them as strings."""
  return value if math.isfinite(value) else str(value)
