"""Trainer runtime: orbax checkpoints, preemption signals, finiteness, digests.

Checkpoints hold the *unreplicated* state as host numpy arrays
(`flax.serialization.to_state_dict` layout), so they do not depend on the device
count and a run may resume on a different number of devices. Replication and the
device mesh are in `mixer_flax/devices.py`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
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


def sync(name: str) -> None:
  """Barrier over all processes (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
  """True if `flag` is True on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  flags = multihost_utils.process_allgather(np.array([flag], np.int32))
  return bool(np.any(flags))
