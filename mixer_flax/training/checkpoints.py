"""Orbax checkpoints of the unreplicated train state, verified by a digest.

Checkpoints hold the state as host numpy arrays (`flax.serialization.to_state_dict` layout),
so a run may resume on another number of devices. Only finite states are saved
(`all_finite`); resuming with fallback past damaged checkpoints is `resume.py`.

A save the storage refuses (full disk, quota, ...) raises `fileio.WriteError` once, in one
line, after removing the partial `<step>.orbax-checkpoint-tmp` directory; the older
checkpoints are untouched, so a rerun with space resumes from the newest. orbax's own copies
of the error (ERROR logs with tracebacks from its writer threads, 'Event loop is closed' from
tensorstore callbacks) are silenced (`orbax_logs.py`); `--verbose` shows the chained traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mixer_flax import fileio
from mixer_flax.training import orbax_logs

PyTree = Any

CHECKPOINT_DIR = 'checkpoints'
TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax writes <step><TMP_SUFFIX>, renamed on commit


@jax.jit
def _all_finite(tree: PyTree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def all_finite(tree: PyTree) -> bool:
  """True when every float leaf of `tree` (host or device arrays) is finite. Syncs."""
  return bool(_all_finite(tree))


def digest(tree: PyTree) -> str:
  """sha256 of a host pytree's leaves (paths, dtypes, shapes and bytes)."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.ascontiguousarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape};'.encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def state_bytes(tree: PyTree) -> int:
  """Bytes of a tree's arrays from their shapes and dtypes (arrays or `jax.ShapeDtypeStruct`)."""
  return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize
             for leaf in jax.tree_util.tree_leaves(tree))


def remedy(keep: int) -> str:
  """What a trainer whose workdir is full can do (the end of its one-line error)."""
  return (f'Free space, keep fewer checkpoints (--config.keep_checkpoints, now {keep}) or use '
          'another --workdir, then rerun the same command to resume.')


def space_warning(workdir: str, *, checkpoint_bytes: int, keep: int) -> str | None:
  """One line when `workdir` has less space free than `keep + 1` checkpoints need, else None.

  orbax writes the newest checkpoint before it deletes the oldest, hence the `+ 1`.
  """
  free, needed = fileio.free_bytes(workdir), (keep + 1) * checkpoint_bytes
  if free is None or free >= needed:
    return None
  return (f'Warning: --workdir={workdir} has {fileio.format_bytes(free)} free, but '
          f'keep_checkpoints + 1 = {keep + 1} checkpoints of ~'
          f'{fileio.format_bytes(checkpoint_bytes)} (params + optimizer state) need '
          f'~{fileio.format_bytes(needed)}. Free space, lower --config.keep_checkpoints or use '
          'another --workdir, or the run stops at a checkpoint it cannot write.')


class Checkpoints:
  """Orbax checkpoints of the unreplicated train state under `workdir/checkpoints/<step>`.

  Saves are atomic (orbax writes `<step>.orbax-checkpoint-tmp` and renames it on commit) and
  record the sha256 of the saved arrays (`digest`) in the step's metadata, so a restore can
  prove it read back what was written; the newest `keep` are kept. Saves run in the
  background: `failed()` (polled each step) tells that one failed meanwhile. Every
  process must call `save` (orbax synchronises them); only the primary process writes.
  Temporary directories left by a killed run are removed on start. Resuming, with fallback
  past damaged checkpoints: `training/resume.py`.
  """

  def __init__(self, workdir: str, *, keep: int):
    orbax_logs.quiet()
    self.directory = fileio.absolute(fileio.join(workdir, CHECKPOINT_DIR))
    self.keep = max(int(keep), 1)
    options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())
    self._saving: tuple[int, int] | None = None  # (step, bytes) of the save in flight
    self._error: Exception | None = None  # a background save's failure, not raised yet

  def latest_step(self) -> int | None:
    """Step of the newest committed checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of every kept checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def reload(self) -> None:
    """Re-reads the list of checkpoints from the directory."""
    self._manager.reload()

  def save(self, step: int, state_host: PyTree) -> None:
    """Starts saving a host copy of the state (a flax struct / pytree) as checkpoint `step`.

    Raises:
      fileio.WriteError: this save, or the previous one still in flight, was refused.
    """
    self.wait()  # a failure of the previous save is reported as that save's
    if step in self._manager.all_steps():
      return
    item = state_dict(state_host)
    self._saving = (step, state_bytes(item))
    try:
      self._manager.save(step, args=ocp.args.StandardSave(item),
                         custom_metadata={'state_sha256': digest(item)})
    except Exception as e:  # noqa: BLE001  (orbax wraps the OSError in many types)
      saving, self._saving = self._saving, None
      self._fail(*saving, e)

  def failed(self) -> bool:
    """Without blocking: whether a background save has failed (then `raise_failure`)."""
    if self._saving is not None and not self._manager.is_saving_in_progress():
      try:
        self.wait()
      except Exception as e:  # noqa: BLE001  (kept for raise_failure)
        self._error = e
    return self._error is not None

  def raise_failure(self) -> None:
    """Raises the WriteError of the failed save, once (multi-host: or that another failed)."""
    error, self._error = self._error, None
    if error is None:
      raise RuntimeError(f'Saving a checkpoint in {self.directory} failed on another process; '
                         'its log has the error.')
    raise error

  def wait(self) -> None:
    """Blocks until pending saves are committed; raises WriteError if one was refused."""
    saving, self._saving = self._saving, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      if saving is None:
        raise
      self._fail(*saving, e)

  def _fail(self, step: int, nbytes: int, error: Exception) -> None:
    """Removes step's partial directory, re-lists the kept ones, raises the one-line error."""
    with contextlib.suppress(Exception):
      self._manager.wait_until_finished()  # no writer thread may still touch the directory
    self._remove_partial(step)
    self._manager.reload()  # orbax dropped the oldest step from its list before committing
    latest = self._manager.latest_step()
    note = (f'The checkpoint of step {latest} is intact' if latest is not None
            else 'No earlier checkpoint exists') + '; the partial one was removed.'
    failure = fileio.write_error(error, what=f'the checkpoint of step {step}',
                                 path=self.directory, needed=nbytes, note=note,
                                 remedy=remedy(self.keep))
    if failure is None:
      raise error
    raise failure from error

  def _remove_partial(self, step: int) -> None:
    if jax.process_index() != 0:
      return
    directory = fileio.path_of(self.directory)
    for _ in range(10):  # tensorstore writes still in flight may recreate files: retry
      partial = [p for p in directory.iterdir() if p.name.startswith(f'{step}{TMP_SUFFIX}')]
      if not partial:
        return
      for p in partial:
        if fileio.is_local(self.directory):
          shutil.rmtree(p, ignore_errors=True)
        else:
          with contextlib.suppress(Exception):
            p.rmtree()
      time.sleep(0.1)

  def item_metadata(self, step: int) -> PyTree:
    """Shapes and dtypes of checkpoint `step`'s arrays (orbax `ArrayMetadata` leaves)."""
    return self._manager.item_metadata(step)

  def saved_digest(self, step: int) -> str | None:
    """The sha256 recorded when `step` was saved (None for older or damaged metadata)."""
    try:
      return (self._manager.metadata(step).custom_metadata or {}).get('state_sha256')
    except Exception:  # noqa: BLE001  (unreadable step metadata: nothing to compare with)
      return None

  def restore_tree(self, step: int, target: PyTree) -> PyTree:
    """Checkpoint `step` as a state dict shaped like `target` (`state_dict(template)`)."""
    return self._manager.restore(step, args=ocp.args.StandardRestore(target))

  def restore(self, step: int, template: PyTree) -> PyTree:
    """Restores checkpoint `step` into the structure of the host state `template`."""
    return from_state_dict(template, self.restore_tree(step, state_dict(template)))

  def close(self) -> None:
    """Waits for pending saves (WriteError if one was refused) and releases the manager."""
    try:
      self.wait()
    finally:
      with contextlib.suppress(Exception):
        self._manager.close()

  def abort(self) -> fileio.WriteError | None:
    """`close()` on the way out of a failed run: returns a refused save's error, never raises.

    A save of a good state still in flight is committed; one reported before is not repeated.
    """
    try:
      self.close()
    except fileio.WriteError as e:
      return e
    except Exception:  # noqa: BLE001  (the run's own error is the one to report)
      pass
    return None


def state_dict(state: PyTree) -> PyTree:
  """The state as nested dicts of numpy arrays (0-d for scalars: orbax rejects numpy scalars)."""
  return jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(state))


def from_state_dict(template: PyTree, tree: PyTree) -> PyTree:
  """Inverse of `state_dict`, into the structure of `template`."""
  return flax.serialization.from_state_dict(template, tree)
