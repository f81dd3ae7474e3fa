"""Input pipeline: train / eval batches for pmap from tfds datasets or image folders.

Contract: `get_dataset_info`, `get_train_iterator`, `get_eval_iterator`, all reading a run
config (`config.base_config` keys). Batches are dicts of numpy arrays
(device arrays sharded over the local devices when `config.prefetch > 0`):

  images  uint8 [local_devices, per_device, H, W, 3]
  labels  int32 [local_devices, per_device] class indices, or uint8 multi-hot
          [local_devices, per_device, num_classes] where the dataset label is a list
  mask    float32 [local_devices, per_device] (eval only; 0 on padding)

The host only decodes, crops, resizes and flips; RandAugment, mixup, one-hot
encoding and the scale to [-1, 1] run on the device inside the pmapped steps
(`data.on_device`, configured by the same `config.pp` keys).

Training stream of process p (deterministic in (seed, p)): epoch e is this
process's shard in a fixed order, shuffled with a buffer of
`config.shuffle_buffer` records and a seed derived from (seed, p, e); epochs are
concatenated and cut into batches of config.batch / process_count. Records are
still encoded while shuffled; each is decoded, cropped and flipped with a stateless
seed derived from (seed, p, its position in the stream). So `start_step=k`
reproduces an uninterrupted run exactly: it starts at epoch k*B // n and skips
the remaining (k*B mod n) records *before decoding* (B = per-process batch, n =
per-process shard size). Cost: reading at most one
epoch of this process's encoded records (ImageNet-1k on one host: ~1.3 M
records / ~140 GB worst case; divide by the number of hosts).

Eval: one pass over this process's shard, padded (mask 0) to a number of
batches that is the same on every process, so each example of the split is
counted exactly once over all hosts and devices.

Threads: tf.data runs in a private pool of `config.tf_threads` threads
(`sources.tf_options`), so the input pipeline leaves the other cores to XLA.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import tensorflow as tf

from mixer_flax.data import checks, preprocessing, sources
from mixer_flax.devices import prefetch_to_device

__all__ = ['DatasetInfo', 'get_dataset_info', 'get_train_iterator', 'get_eval_iterator']

TF_PREFETCH = 2  # Batches tf.data prepares ahead (on top of config.prefetch on devices).
# Train splits up to this many records keep their (still encoded) records in memory after the
# first epoch: reading and parsing them was ~40% of the digits pipeline's CPU time.
CACHE_RECORDS_MAX = 20_000


class DatasetInfo(NamedTuple):
  """What the trainer needs to know about a dataset (example counts over all processes)."""

  num_classes: int
  num_train_examples: int
  num_eval_examples: int
  label_names: tuple[str, ...]


def _source(config: Any) -> sources.Source:
  return sources.get_source(
      dataset=config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
      folder_root=config.folder_root, image_key=config.image_key, label_key=config.label_key,
      record_fn=config.record_fn)


def _num_classes(config: Any, source: sources.Source) -> int:
  num_classes = config.num_classes or source.num_classes
  if num_classes <= 0:
    raise ValueError(f'config.num_classes is not set and {source.name} with config.record_fn='
                     f'{config.record_fn!r} has no class count of its own: set it.')
  if num_classes < source.num_classes:
    raise ValueError(f'config.num_classes={num_classes} is smaller than the '
                     f'{source.num_classes} classes of {source.name}.')
  return num_classes


def get_dataset_info(config: Any) -> DatasetInfo:
  """Class count (config.num_classes if set) and split sizes summed over all processes."""
  source = _source(config)
  return DatasetInfo(
      num_classes=_num_classes(config, source),
      num_train_examples=source.count(config.train_split, 0, 1),
      num_eval_examples=source.count(config.eval_split, 0, 1),
      label_names=tuple(source.label_names))


def check_splits(config: Any) -> list[str]:
  """`checks.check_splits` for the train and eval split of `config` on this process."""
  return checks.check_splits(
      _source(config), train_split=config.train_split, eval_split=config.eval_split,
      process_index=jax.process_index(),
      process_count=jax.process_count())


def check_split(config: Any, split: str) -> None:
  """Opens `split` of `config.dataset` on this process, as `check_splits` does (evaluators)."""
  _source(config).records(split, jax.process_index(), jax.process_count())


def _topology(process_index: int | None, process_count: int | None,
              local_device_count: int | None) -> tuple[int, int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count,
          jax.local_device_count() if local_device_count is None else local_device_count)


def _threads(config: Any) -> int:
  return sources.tf_options(config.tf_threads).threading.private_threadpool_size


def _to_devices(batch: dict[str, tf.Tensor], local_devices: int) -> dict[str, tf.Tensor]:
  """[B, ...] -> [local_devices, B / local_devices, ...]."""
  return {k: tf.reshape(v, [local_devices, -1, *v.shape[1:]]) for k, v in batch.items()}


def _fold(key: tf.Tensor, *data: int | tf.Tensor) -> tf.Tensor:
  for d in data:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(d, tf.int64))
  return key


def get_train_iterator(config: Any, *, seed: int, start_step: int = 0,
                       process_index: int | None = None, process_count: int | None = None,
                       local_device_count: int | None = None) -> Iterator[dict[str, Any]]:
  """Infinite stream of this process's training batches (see the module doc).

  Args:
    config: experiment config (dataset, train_split, batch, image_size, pp, ...).
    seed: base seed; batches are a function of (seed, process_index, step).
    start_step: first step to yield; identical to skipping `start_step` batches.
    process_index: defaults to jax.process_index() (tests simulate processes).
    process_count: defaults to jax.process_count().
    local_device_count: defaults to jax.local_device_count().

  Yields:
    {'images': uint8 [D, b, H, W, 3], 'labels': int32 [D, b] or uint8 [D, b, K]} with
    D = local devices and b = config.batch // (process_count * D).
  """
  pi, pc, ld = _topology(process_index, process_count, local_device_count)
  batch = config.batch // pc  # divisible by processes x devices (config.validate)
  source, pp = _source(config), config.pp
  num_classes, size = _num_classes(config, source), int(config.image_size)
  split = config.train_split
  n = source.count(split, pi, pc)
  if n == 0:
    raise ValueError(f'config.train_split={split!r} gives process {pi} of {pc} no examples.')
  base = source.records(split, pi, pc)
  if n <= CACHE_RECORDS_MAX:
    base = base.cache()
  key = tf.constant([seed, pi], tf.int64)
  buffer = max(1, min(int(config.shuffle_buffer), n))

  def epoch(e: tf.Tensor) -> tf.data.Dataset:
    shuffle_seed = tf.random.stateless_uniform(
        [], seed=_fold(key, 0, e), minval=None, maxval=None, dtype=tf.int64)
    return base.enumerate().shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False
                                    ).map(lambda i, r: (e * n + i, r))

  def preprocess(index: tf.Tensor, record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    record = source.load(record)
    # The first of two split seeds, as before RandAugment moved to the device: same crops.
    s_crop = tf.random.experimental.stateless_split(_fold(key, 1, index), 2)[0]
    image = preprocessing.train_image(
        record['image'], seed=s_crop, image_size=size, crop=pp.crop, area_min=pp.area_min,
        flip=pp.flip)
    return {'images': tf.ensure_shape(image, [size, size, 3]),
            'labels': preprocessing.encode_labels(record['label'], num_classes)}

  first = start_step * batch
  threads = _threads(config)
  ds = tf.data.Dataset.range(first // n, 2**62).flat_map(epoch).skip(first % n)
  ds = ds.map(preprocess, num_parallel_calls=threads)
  ds = ds.batch(batch, drop_remainder=True).map(functools.partial(_to_devices, local_devices=ld))
  ds = ds.prefetch(TF_PREFETCH).with_options(sources.tf_options(config.tf_threads))
  return _maybe_prefetch(ds.as_numpy_iterator(), config, ld)


def get_eval_iterator(config: Any, *, split: str | None = None, batch_size: int | None = None,
                      process_index: int | None = None, process_count: int | None = None,
                      local_device_count: int | None = None) -> Iterator[dict[str, Any]]:
  """One pass over this process's shard of `split` (default config.eval_split).

  Every process yields ceil(max_p n_p / b) batches of b = batch_size (default
  config.batch_eval, else config.batch) // process_count examples, padded with
  mask 0. Multi-label examples without any label get mask 0 (as ImageNet ReaL).

  Yields:
    {'images': uint8 [D, b/D, H, W, 3], 'labels': int32 [D, b/D] or uint8 [D, b/D, K],
     'mask': f32 [D, b/D]}.
  """
  pi, pc, ld = _topology(process_index, process_count, local_device_count)
  batch = (batch_size or config.batch_eval) // pc  # divisible by processes x devices (validate)
  source, pp = _source(config), config.pp
  num_classes, size = _num_classes(config, source), int(config.image_size)
  split = split or config.eval_split
  counts = [source.count(split, p, pc) for p in range(pc)]
  num_batches = math.ceil(max(counts) / batch)

  def preprocess(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    record = source.load(record)
    image = preprocessing.eval_image(record['image'], image_size=size, mode=pp.eval_mode,
                                     eval_resize=pp.eval_resize)
    labels = preprocessing.encode_labels(record['label'], num_classes)
    mask = tf.cast(tf.reduce_max(labels) > 0, tf.float32) if record['label'].shape.rank else 1.0
    return {'images': tf.ensure_shape(image, [size, size, 3]), 'labels': labels,
            'mask': tf.cast(mask, tf.float32)}

  ds = source.records(split, pi, pc).map(preprocess, num_parallel_calls=_threads(config))
  padding = {k: tf.zeros(s.shape, s.dtype) for k, s in ds.element_spec.items()}
  ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(
      num_batches * batch - counts[pi]))
  ds = ds.batch(batch, drop_remainder=True).map(functools.partial(_to_devices, local_devices=ld))
  ds = ds.prefetch(TF_PREFETCH).with_options(sources.tf_options(config.tf_threads))
  return _maybe_prefetch(ds.as_numpy_iterator(), config, ld)


def _maybe_prefetch(iterator: Iterator, config: Any, local_devices: int) -> Iterator:
  size = int(config.prefetch)
  if size <= 0:
    return iterator
  return prefetch_to_device(iterator, size, devices=jax.local_devices()[:local_devices])
