"""Resuming from the newest checkpoint that restores; damaged ones are moved aside, not deleted.

`restore_latest(ckpts, template, log=...)` tries the checkpoints of `ckpts` newest first:

* its arrays (paths, shapes, dtypes, from orbax's metadata) must be the ones the current
  config builds, else `CheckpointMismatch` lists the differences in a few lines (the model or
  optimizer changed: no older checkpoint would fit either, so there is no fallback);
* a checkpoint whose metadata or data cannot be read (deleted or truncated files, an empty
  `_METADATA`), or whose restored state differs from the sha256 recorded when it was saved
  (`Checkpoints.save`), is *damaged*: the next older one is tried. When one restores, the
  damaged newer ones are moved to `workdir/checkpoints_damaged/<step>` with a warning that
  names each and why (so orbax neither lists nor garbage-collects them, and a later save of
  the same step does not collide); they are never deleted.
* if none restores, nothing is moved and the run stops, listing each checkpoint and why.

Multi-host: every process restores; a checkpoint counts as damaged if it failed on any
process; process 0 moves it, then all processes re-list the directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from mixer_flax import devices, fileio
from mixer_flax.training import checkpoints
from mixer_flax.training.workdir_lock import WorkdirError

PyTree = Any
DAMAGED_DIR = 'checkpoints_damaged'


class CheckpointMismatch(WorkdirError):
  """The saved state has other arrays than the one the current config builds."""


def _shapes(tree: PyTree) -> dict[str, tuple[tuple[int, ...], str]]:
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    key = '.'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path)
    out[key] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
  return out


def _summary(keys: list[str], limit: int = 4) -> str:
  shown = ', '.join(keys[:limit])
  return f'{shown}, ... ({len(keys)} in all)' if len(keys) > limit else shown


def structure_problems(saved: PyTree, template: PyTree) -> list[str]:
  """Differences between the saved arrays (orbax metadata) and the template's, a few lines."""
  a, b = _shapes(saved), _shapes(template)
  problems = []
  if missing := sorted(set(b) - set(a)):
    problems.append(f'arrays the config needs but the checkpoint lacks: {_summary(missing)}')
  if extra := sorted(set(a) - set(b)):
    problems.append(f'arrays in the checkpoint the config does not build: {_summary(extra)}')
  if shapes := [f'{k} {a[k][0]}/{a[k][1]} saved vs {b[k][0]}/{b[k][1]} now'
                for k in sorted(set(a) & set(b)) if a[k] != b[k]]:
    problems.append(f'shapes/dtypes differ: {_summary(shapes, 3)}')
  return problems


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0][:300] if text else ""}'


def _try_restore(ckpts: checkpoints.Checkpoints, step: int, target: PyTree) -> tuple[Any, str]:
  """(restored state dict or None, why it is damaged); raises CheckpointMismatch."""
  try:
    saved = ckpts.item_metadata(step)
  except Exception as e:  # noqa: BLE001  (orbax raises many kinds for a damaged file)
    return None, f'its metadata cannot be read ({_first_line(e)})'
  if saved is None:
    return None, 'its metadata is missing'
  if problems := structure_problems(saved, target):
    raise CheckpointMismatch(
        f'The checkpoint {ckpts.directory}/{step} holds another train state than this config '
        'builds (model, optimizer or grad_norm_clip changed): ' + '; '.join(problems) +
        '. Use a new --workdir, or restore the settings the checkpoint was written with.')
  try:
    restored = ckpts.restore_tree(step, target)
  except Exception as e:  # noqa: BLE001
    return None, f'its data cannot be read ({_first_line(e)})'
  expected = ckpts.saved_digest(step)
  if expected and checkpoints.digest(restored) != expected:
    return None, 'its restored arrays differ from the sha256 recorded when it was saved'
  return restored, ''


def _move_aside(ckpts: checkpoints.Checkpoints, step: int) -> str:
  root = os.path.join(os.path.dirname(ckpts.directory.rstrip('/')), DAMAGED_DIR)
  target = os.path.join(root, str(step))
  n = 1
  while fileio.exists(target):
    n += 1
    target = os.path.join(root, f'{step}-{n}')
  fileio.makedirs(root)
  src = os.path.join(ckpts.directory, str(step))
  fileio.path_of(src).rename(target)
  return target


def restore_latest(ckpts: checkpoints.Checkpoints, template: PyTree, *,
                   log: Callable[[str], None]) -> tuple[int, PyTree]:
  """(step, state) of the newest restorable checkpoint, or (0, template) if there is none.

  Args:
    ckpts: the run's checkpoints.
    template: the host train state the config builds (structure, shapes, dtypes).
    log: prints a warning line (process 0).

  Raises:
    CheckpointMismatch: the checkpoints hold another state (config changed).
    WorkdirError: checkpoints exist but none can be restored.
  """
  target = checkpoints.state_dict(template)
  damaged: list[tuple[int, str]] = []
  for step in sorted(ckpts.all_steps(), reverse=True):
    restored, why = _try_restore(ckpts, step, target)
    if devices.any_process(restored is None):
      damaged.append((step, why or 'it cannot be restored on another process'))
      continue
    if damaged:
      moved = [(s, w, _move_aside(ckpts, s) if jax.process_index() == 0 else '')
               for s, w in damaged]
      devices.sync('moved damaged checkpoints')
      ckpts.reload()
      for s, w, path in moved:
        log(f'Warning: checkpoint {s} in {ckpts.directory} cannot be restored: {w}. Moved it '
            f'to {path} (not deleted); resuming from the checkpoint of step {step}.')
    return step, checkpoints.from_state_dict(template, restored)
  if damaged:
    raise WorkdirError(
        f'No checkpoint in {ckpts.directory} can be restored: ' +
        '; '.join(f'step {s}: {w}' for s, w in damaged) +
        f'. Nothing was moved or deleted. To start this run over, move {ckpts.directory} '
        'away; or use a new --workdir.')
  return 0, template
