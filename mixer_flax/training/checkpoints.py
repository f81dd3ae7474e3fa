"""Orbax checkpoints of the unreplicated train state, verified by a digest.

Checkpoints hold the state as host numpy arrays (`flax.serialization.to_state_dict` layout),
so a run may resume on another number of devices. Only finite states are saved
(`all_finite`); resuming with fallback past damaged checkpoints is `resume.py`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mixer_flax import fileio

PyTree = Any

CHECKPOINT_DIR = 'checkpoints'


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


class Checkpoints:
  """Orbax checkpoints of the unreplicated train state under `workdir/checkpoints/<step>`.

  Saves are atomic (orbax writes a temporary directory and renames it on commit) and record
  the sha256 of the saved arrays (`digest`) in the step's metadata, so a restore can prove it
  read back what was written; the newest `keep` are kept. Every process must call `save`
  (orbax synchronises them); only the primary process writes. Resuming, with fallback past
  damaged checkpoints: `training/resume.py`.
  """

  def __init__(self, workdir: str, *, keep: int):
    self.directory = fileio.absolute(fileio.join(workdir, CHECKPOINT_DIR))
    options = ocp.CheckpointManagerOptions(max_to_keep=max(int(keep), 1), create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())

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
    """Saves a host copy of the state (a flax struct / pytree) as checkpoint `step`."""
    if step in self._manager.all_steps():
      return
    item = state_dict(state_host)
    self._manager.save(step, args=ocp.args.StandardSave(item),
                       custom_metadata={'state_sha256': digest(item)})

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

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def state_dict(state: PyTree) -> PyTree:
  """The state as nested dicts of numpy arrays (0-d for scalars: orbax rejects numpy scalars)."""
  return jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(state))


def from_state_dict(template: PyTree, tree: PyTree) -> PyTree:
  """Inverse of `state_dict`, into the structure of `template`."""
  return flax.serialization.from_state_dict(template, tree)
