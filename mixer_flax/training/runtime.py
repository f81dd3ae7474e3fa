"""Trainer runtime: orbax checkpoints, preemption signals, finiteness, digests.

Checkpoints hold the *unreplicated* state as host numpy arrays
(`flax.serialization.to_state_dict` layout), so they do not depend on the device
count and a run may resume on a different number of devices. Replication and the
device mesh are in `mixer_flax/devices.py`.
"""

from __future__ import annotations

import hashlib
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

  Saves are atomic (orbax writes a temporary directory and renames it on commit), the
  newest `keep` are kept, and `restore_latest` finds the newest committed one. Every
  process must call `save` (orbax synchronises them); only the primary process writes.
  """

  def __init__(self, workdir: str, *, keep: int):
    self.directory = fileio.absolute(fileio.join(workdir, CHECKPOINT_DIR))
    options = ocp.CheckpointManagerOptions(max_to_keep=max(int(keep), 1), create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Step of the newest committed checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Steps of every kept checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state_host: PyTree) -> None:
    """Saves a host copy of the state (a flax struct / pytree) as checkpoint `step`."""
    if step in self._manager.all_steps():
      return
    item = _numpy_tree(flax.serialization.to_state_dict(state_host))
    self._manager.save(step, args=ocp.args.StandardSave(item))

  def restore(self, step: int, template: PyTree) -> PyTree:
    """Restores checkpoint `step` into the structure of the host state `template`."""
    target = _numpy_tree(flax.serialization.to_state_dict(template))
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    except ValueError as e:
      raise ValueError(
          f'The checkpoint {self.directory}/{step} does not match the state this config builds '
          '(model, optimizer or grad_norm_clip changed since it was written?). Use a new '
          f'--workdir, or restore the original settings. Details: {str(e)[:2000]}') from e
    return flax.serialization.from_state_dict(template, restored)

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def _numpy_tree(tree: PyTree) -> PyTree:
  """Leaves as numpy arrays (0-d arrays for scalars: orbax rejects numpy scalars)."""
  return jax.tree_util.tree_map(np.asarray, tree)


class PreemptionSignal:
  """Turns SIGTERM (preemption) into a flag the training loop polls between steps.

  Used as a context manager; the previous handler is restored on exit. Outside the main
  thread (where handlers cannot be installed) it is a no-op flag.
  """

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
    self.signals = signals
    self.received: int | None = None
    self._previous: dict[int, Any] = {}

  def _handler(self, signum, frame):
    del frame
    self.received = signum

  def __enter__(self) -> PreemptionSignal:
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handler)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}


def any_process(flag: bool) -> bool:
  """True if `flag` is True on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  flags = multihost_utils.process_allgather(np.array([flag], np.int32))
  return bool(np.any(flags))
