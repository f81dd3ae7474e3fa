"""Opening a workdir: a directory, locked by one run, resumed only with the config it started.

`open_workdir(config, workdir, ...)` runs at the start of `train.train_and_evaluate`, before
anything is written to `workdir`:

1. `--workdir` must be a directory or not exist yet (it is created);
2. process 0 takes the lock `workdir/lock.json` (`workdir_lock.py`); other processes wait for
   its verdict;
3. with a checkpoint in `workdir/checkpoints`, the config is compared with the saved
   `config.json` (`config_changes.py`: which keys may differ, and why); any other difference
   stops the run, listing `key: old -> new`, unless `--allow_config_change`; nothing is written;
4. after the restore, `OpenedWorkdir.save_config` writes the resolved config atomically to
   `config.json`, keeping a differing old one as `config.step<N>.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from mixer_flax import fileio
from mixer_flax.training import preemption
from mixer_flax.training.config_changes import RESUMABLE_KEYS, as_json, config_changes
from mixer_flax.training.workdir_lock import WorkdirError, WorkdirLock, WorkdirLocked

__all__ = ['RESUMABLE_KEYS', 'CONFIG_FILE', 'ConfigMismatch', 'OpenedWorkdir', 'WorkdirError',
           'WorkdirLock', 'WorkdirLocked', 'check_path', 'config_changes', 'open_workdir']

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


class ConfigMismatch(WorkdirError):
  """The config differs from the workdir's saved one in keys that may not change on resume."""


def _listdir(path: str) -> list[str]:
  directory = fileio.path_of(fileio.absolute(path))
  return [p.name for p in directory.iterdir()] if directory.is_dir() else []


def newest_checkpoint_step(workdir: str) -> int | None:
  """The largest step directory name under `workdir/checkpoints` (no orbax, no writes)."""
  steps = [int(n) for n in _listdir(fileio.join(workdir, CHECKPOINT_DIR)) if n.isdigit()]
  return max(steps) if steps else None


def check_path(workdir: str) -> None:
  """Raises WorkdirError if `workdir` exists and is not a directory."""
  if fileio.exists(workdir) and not fileio.path_of(workdir).is_dir():
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory. Give a directory '
                       '(it is created if missing).')


def _read_saved_config(path: str) -> dict[str, Any] | None:
  if not fileio.exists(path):
    return None
  try:
    with fileio.open_file(path) as f:
      saved = json.load(f)
    if not isinstance(saved, dict):
      raise ValueError('not a JSON object')
    return saved
  except ValueError as e:
    raise ConfigMismatch(
        f'{path} cannot be read ({e}), so this run cannot check that it continues with the '
        'same settings. Use a new --workdir, or pass --allow_config_change to resume with the '
        'current config.') from e


def _check_config(config: ml_collections.ConfigDict, workdir: str, *,
                  allow_config_change: bool, log: Callable[[str], None]) -> Callable[[], None]:
  """Compares `config` with the saved one; returns the function that records it."""
  path = fileio.join(workdir, CONFIG_FILE)
  step = newest_checkpoint_step(workdir)
  new = as_json(config)
  try:
    saved = _read_saved_config(path) if step is not None else None
  except ConfigMismatch:
    if not allow_config_change:
      raise
    saved = None
  changed = saved is not None and saved != new
  if changed:
    resumable, refused = config_changes(saved, new)
    if refused and not allow_config_change:
      raise ConfigMismatch(
          f'--workdir={workdir} holds a run (checkpoint of step {step}) with another config; '
          'these settings may not change on resume:\n  ' + '\n  '.join(refused) +
          f'\nNothing was written. Start a new run with a new --workdir, or continue this one '
          f'under the new settings with --allow_config_change (the old config is then kept '
          f'as config.step{step}.json).')
    log(f'Resuming with changed settings (the previous config is kept as '
        f'config.step{step}.json):\n  ' + '\n  '.join(refused + resumable) +
        ('\n  (the learning-rate schedule now decays to the new total_steps)'
         if any(k.startswith('total_steps:') for k in resumable) else ''))

  def record() -> None:
    if changed:
      fileio.write_atomic(fileio.join(workdir, f'config.step{step}.json'),
                          json.dumps(saved, indent=2, sort_keys=True) + '\n',
                          what='the previous config')
    fileio.write_atomic(path, config.to_json_best_effort(indent=2, sort_keys=True) + '\n',
                        what='the config')

  return record


class OpenedWorkdir:
  """A workdir checked and locked by `open_workdir`.

  Call `save_config()` once the run restored its checkpoint (a run refused by the checkpoint
  itself must not have replaced `config.json`), and `release()` when the run ends.
  """

  def __init__(self, lock: WorkdirLock | None = None,
               record: Callable[[], None] | None = None,
               unregister: Callable[[], None] | None = None):
    self.lock, self._record, self._unregister = lock, record, unregister

  def save_config(self) -> None:
    """Writes `config.json` (process 0; keeps a differing old one as config.step<N>.json)."""
    if self._record is not None:
      self._record()
      self._record = None

  def release(self) -> None:
    """Releases the lock (process 0)."""
    if self.lock is not None:
      self.lock.release()
    if self._unregister is not None:
      self._unregister()


def _remover(lock: WorkdirLock) -> Callable[[], None]:
  """Removes `lock` if it is ours, inside a signal handler: plain os calls, no imports."""
  if not lock.local:
    return lock.release
  path, token = fileio.absolute(lock.path), lock.me['token']

  def remove() -> None:
    with open(path) as f:
      if json.loads(f.read()).get('token') == token:
        os.remove(path)

  return remove


def _open(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool,
          log: Callable[[str], None]) -> OpenedWorkdir:
  check_path(workdir)
  fileio.makedirs(workdir)
  lock = WorkdirLock(workdir)
  # A Ctrl-C outside the step loop exits at once; it removes the lock too (set up before it).
  unregister = preemption.on_exit_now(_remover(lock))
  try:
    lock.acquire()
    if lock.took_over:
      log(f'Warning: {lock.took_over}.')
    record = _check_config(config, workdir, allow_config_change=allow_config_change, log=log)
  except BaseException:
    lock.release()
    unregister()
    raise
  return OpenedWorkdir(lock, record, unregister)


def open_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                 allow_config_change: bool = False,
                 log: Callable[[str], None] = print) -> OpenedWorkdir:
  """Checks and locks `workdir` for a run of `config` (see the module doc).

  Every process calls it (multi-host: a collective); process 0 does the work and the others
  stop with it if it fails.

  Raises:
    WorkdirError (`WorkdirLocked`, `ConfigMismatch`) with the cause and what to do.
  """
  opened, error = OpenedWorkdir(), None
  if jax.process_index() == 0:
    try:
      opened = _open(config, workdir, allow_config_change=allow_config_change, log=log)
    except Exception as e:  # noqa: BLE001  (re-raised below, after the others learn of it)
      error = e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    ok = multihost_utils.broadcast_one_to_all(np.array(error is None, np.int32))
    if not int(ok) and error is None:
      raise WorkdirError(f'Process 0 could not open --workdir={workdir}; see its log.')
  if error is not None:
    raise error
  return opened
