"""Devices: the one 'batch' mesh, replication and prefetch (no TensorFlow).

The train state lives on the devices replicated along a leading axis of size
`jax.local_device_count()` (the `jax.pmap` layout), placed with `jax.device_put` and a
`NamedSharding` over the 1-D 'batch' mesh of the local devices; batches are split
along the same axis. Training, prefetch and few-shot feature extraction all use
this mesh.
"""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any


@functools.lru_cache(maxsize=16)
def _mesh(devices: tuple[Any, ...]) -> Mesh:
  return Mesh(np.asarray(devices), ('batch',))


def local_mesh(devices: Sequence[Any] | None = None) -> Mesh:
  """The 1-D 'batch' mesh over `devices` (default: this process's devices): the pmap layout."""
  return _mesh(tuple(jax.local_devices() if devices is None else devices))


def batch_sharding(devices: Sequence[Any] | None = None) -> NamedSharding:
  """Leading axis split over the 'batch' mesh: slice i on device i (a pmap argument)."""
  return NamedSharding(local_mesh(devices), PartitionSpec('batch'))


def replicated_sharding(devices: Sequence[Any] | None = None) -> NamedSharding:
  """The whole array on every device of the 'batch' mesh (a jit argument)."""
  return NamedSharding(local_mesh(devices), PartitionSpec())


def replicate(tree: PyTree) -> PyTree:
  """Copies every leaf to all local devices: leaf `(...)` -> `(local_devices, ...)`."""
  sharding = batch_sharding()
  n = jax.local_device_count()

  def put(x):
    x = np.asarray(x)
    return jax.device_put(np.broadcast_to(x[None], (n,) + x.shape), sharding)

  return jax.tree_util.tree_map(put, tree)


def unreplicate(tree: PyTree) -> PyTree:
  """Host numpy copy of the first local device's replica: `(local_devices, ...)` -> `(...)`."""
  def get(x):
    if isinstance(x, jax.Array):
      return np.asarray(x.addressable_data(0))[0]
    return np.asarray(x)[0]

  return jax.device_get(jax.tree_util.tree_map(get, tree))


def is_replicated(tree: PyTree, reference: PyTree) -> bool:
  """Whether `tree` has the leading device axis that `reference` lacks.

  `reference` is the same tree unreplicated (arrays or shape structs).
  """
  leaf = jax.tree_util.tree_leaves(tree)[0]
  return tuple(leaf.shape) != tuple(jax.tree_util.tree_leaves(reference)[0].shape)


def prefetch_to_device(iterator: Iterable[dict[str, np.ndarray]], size: int,
                       devices: Sequence[Any] | None = None) -> Iterator[dict[str, jax.Array]]:
  """Keeps `size` batches on the devices ahead of the consumer.

  Each leaf [len(devices), ...] is placed with `jax.device_put` and the pmap
  sharding of `devices` (slice i on device i), so `jax.pmap` uses it without
  copies. Batches that are already jax.Arrays (an iterator of this module with
  `config.prefetch > 0`) pass through unchanged, with no extra buffering.

  Args:
    iterator: batches whose leaves have leading dimension len(devices).
    size: number of batches kept in flight (>= 1).
    devices: default jax.local_devices().

  Yields:
    The same batches as jax.Arrays.
  """
  devices = tuple(jax.local_devices() if devices is None else devices)
  sharding = batch_sharding(devices)

  def put(x: np.ndarray) -> jax.Array:
    if x.shape[:1] != (len(devices),):
      raise ValueError(f'Batch leaf of shape {x.shape} does not start with the number of '
                       f'devices ({len(devices)}).')
    return jax.device_put(x, sharding)

  iterator = iter(iterator)
  first = next(iterator, None)
  if first is None:
    return
  if all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(first)):
    yield first  # already placed (checked before placing anything)
    yield from iterator
    return
  queue: collections.deque = collections.deque([jax.tree_util.tree_map(put, first)])

  def enqueue(n: int) -> None:
    for batch in itertools.islice(iterator, n):
      queue.append(jax.tree_util.tree_map(put, batch))

  enqueue(max(1, size) - 1)
  while queue:
    yield queue.popleft()
    enqueue(1)


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
