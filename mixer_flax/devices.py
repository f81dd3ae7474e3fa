"""Device prefetch for pmap (no TensorFlow): keep batches on the devices ahead of the step."""

from __future__ import annotations

import collections
import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import numpy as np


@functools.lru_cache(maxsize=16)
def _pmap_sharding(devices: tuple[Any, ...], ndim: int) -> jax.sharding.Sharding:
  """Sharding of a pmap argument: leading axis split over `devices`, one slice each."""
  if hasattr(jax.sharding, 'PmapSharding'):  # Older JAX.
    return jax.sharding.PmapSharding.default((len(devices),) + (1,) * (ndim - 1), 0, devices)
  mesh = jax.sharding.Mesh(np.asarray(devices), ('batch',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))


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

  def put(x: np.ndarray) -> jax.Array:
    if x.shape[:1] != (len(devices),):
      raise ValueError(f'Batch leaf of shape {x.shape} does not start with the number of '
                       f'devices ({len(devices)}).')
    return jax.device_put(x, _pmap_sharding(devices, x.ndim))

  queue: collections.deque = collections.deque()
  iterator = iter(iterator)

  def enqueue(n: int) -> None:
    for batch in itertools.islice(iterator, n):
      queue.append(jax.tree_util.tree_map(put, batch))

  enqueue(max(1, size))
  if queue and all(isinstance(x, jax.Array) for x in jax.tree_util.tree_leaves(queue[0])):
    yield from queue
    yield from iterator
    return
  while queue:
    yield queue.popleft()
    enqueue(1)
