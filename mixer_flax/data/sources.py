"""Where examples come from: prepared tfds datasets and image folders.

A `Source` hands out, for a tfds split string and a process, a finite tf.data
dataset of *undecoded* records {'image': encoded bytes or file path, 'label'}
in a fixed order, plus exact example counts. Decoding happens later, after
shuffling (`Source.load` turns a record's path into bytes).

Nothing here downloads. A tfds dataset must already be prepared in `data_dir`,
except (a) the bundled `sklearn_digits`, prepared offline on first use, and
(b) datasets built from archives you downloaded yourself (ImageNet), prepared
from `manual_dir` on first use.

Threads: `tf_options` runs tf.data in a private pool (0: half the CPU cores, at
least 1, at most 16) with intra-op parallelism 1. TensorFlow is hidden from GPUs.

Per-process sharding: process p of P reads `tfds.split_for_jax_process(split)`
(tfds datasets) or the same even division of the split (image folders): the
first N mod P processes get one example more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mixer_flax.data import datasets as _registered  # noqa: F401  (registers sklearn_digits)
from mixer_flax.data import image_folder

try:  # TF must never take GPU memory from JAX.
  tf.config.set_visible_devices([], 'GPU')
except (RuntimeError, ValueError):  # Already initialised or no GPU support: nothing to do.
  pass

LOCAL_DATASETS = ('sklearn_digits',)  # Prepared offline from data installed with the package.


@dataclasses.dataclass(frozen=True)
class Source:
  """A dataset's splits as undecoded records.

  Attributes:
    name: dataset name (tfds name or 'image_folder:<root>').
    num_classes: number of classes of the label feature.
    label_names: class names, index = label.
    count: fn(split, process_index, process_count) -> examples of that process's shard.
    records: fn(split, process_index, process_count) -> finite tf.data.Dataset of
      {'image': tf.string scalar, 'label': int64 () or [k]} in a fixed order.
    load: fn(record) -> record whose 'image' holds the encoded bytes.
    labels: fn(split) -> int64 [n] labels of the whole split, where known without reading
      the data (image folders); None otherwise.
  """

  name: str
  num_classes: int
  label_names: Sequence[str]
  count: Callable[[str, int, int], int]
  records: Callable[[str, int, int], tf.data.Dataset]
  load: Callable[[dict], dict] = lambda record: record
  labels: Callable[[str], np.ndarray] | None = None


def get_source(*, dataset: str, data_dir: str | None = None, manual_dir: str | None = None,
               folder_root: str | None = None, image_key: str = 'image',
               label_key: str = 'label', record_fn: str | None = None) -> Source:
  """Opens `dataset` (a tfds name or 'image_folder'); see the module doc.

  `record_fn` ('module:function') maps each full tfds example (image still encoded)
  to {'image', 'label'}: labels derived from other features (VTAB's CLEVR counts,
  binned distances). Its class count then comes from config.num_classes.
  """
  if dataset == 'image_folder':
    return _folder_source(os.path.abspath(os.path.expanduser(folder_root)))
  return _tfds_source(dataset, data_dir, manual_dir, image_key, label_key, record_fn)


@functools.lru_cache(maxsize=8)
def _folder_source(root: str) -> Source:
  folder = image_folder.ImageFolder(root)
  return Source(
      name=f'image_folder:{root}', num_classes=len(folder.classes), label_names=folder.classes,
      count=lambda split, pi, pc: len(folder.shard(split, pi, pc)[0]),
      records=folder.records,
      load=lambda r: {**r, 'image': tf.io.read_file(r['image'])},
      labels=lambda split: folder.shard(split, 0, 1)[1])


def _refuse_download(*args, **kwargs):
  del args, kwargs
  raise RuntimeError(
      'Preparing this dataset wants to download files; mixer_flax never downloads. Prepare it '
      'on a machine with internet (`tfds build NAME --data_dir=DIR`) and point config.data_dir '
      'at DIR.')


def _offline_prepare(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
  """download_and_prepare with network downloads replaced by an error.

  tfds' own "Downloading and preparing dataset ..." lines are replaced by one line that says
  what happens (nothing is downloaded); the bundled datasets (seconds) show no progress bars.
  """
  make_manager = builder._make_download_manager  # pylint: disable=protected-access

  def offline_manager(*args, **kwargs):
    manager = make_manager(*args, **kwargs)
    manager.download = _refuse_download
    manager.download_and_extract = _refuse_download
    return manager

  builder._make_download_manager = offline_manager  # pylint: disable=protected-access
  source = f'the archives in {manual_dir}' if manual_dir else 'data installed with mixer_flax'
  builder._log_download_bytes = lambda: print(  # pylint: disable=protected-access
      f'Preparing {builder.name} in {builder.data_dir} from {source} (once; nothing is '
      'downloaded).', flush=True)
  builder._log_download_done = lambda: None  # pylint: disable=protected-access
  bars = contextlib.nullcontext() if manual_dir else _no_progress_bars()
  with bars:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, try_download_gcs=False))


@contextlib.contextmanager
def _no_progress_bars():
  tfds.display_progress_bar(False)
  try:
    yield
  finally:
    tfds.display_progress_bar(True)


def _not_found_message(name: str) -> str:
  return (f'config.dataset={name!r} is neither a tfds dataset known to tensorflow_datasets '
          f'{tfds.__version__} nor "image_folder". Use a name from '
          'https://www.tensorflow.org/datasets/catalog (prepared in config.data_dir), the bundled '
          "'sklearn_digits', or dataset='image_folder' with config.folder_root=<dir> holding "
          '<split>/<class>/<image> files (e.g. an extracted ImageNet-21k).')


def prepare_tfds(name: str, *, data_dir: str | None,
                 manual_dir: str | None) -> tfds.core.DatasetBuilder:
  """Returns the builder of a prepared tfds dataset, preparing only what needs no network.

  Raises:
    ValueError: unknown dataset name.
    FileNotFoundError: the dataset is not prepared and cannot be without a download (the
      message says what to download and where to put it).
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(_not_found_message(name)) from e
  if builder.is_prepared():
    return builder
  root = builder.data_dir_root
  if name.split(':')[0].split('/')[0] in LOCAL_DATASETS:
    try:
      _offline_prepare(builder, None)
    except OSError:  # Another process sharing data_dir may have won the race to prepare it.
      builder = tfds.builder(name, data_dir=data_dir)
      if not builder.is_prepared():
        raise
    return builder
  instructions = builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  if instructions:
    manual = os.path.expanduser(manual_dir or os.path.join(root, 'downloads', 'manual'))
    if not os.path.isdir(manual) or not os.listdir(manual):
      raise FileNotFoundError(
          f'Dataset {name!r} is not prepared in data_dir={root} and is built from files you '
          f'download yourself:\n{instructions.strip()}\nPut them in {manual} (set '
          'config.manual_dir to use another directory) and run again: tfds then prepares the '
          f'dataset once into {root} (see README "Data").')
    try:
      _offline_prepare(builder, manual)
    except Exception as e:
      raise FileNotFoundError(
          f'Preparing {name!r} from manual_dir={manual} failed ({e}). It needs:\n'
          f'{instructions.strip()}') from e
    return builder
  raise FileNotFoundError(
      f'Dataset {name!r} is not prepared in data_dir={root}, and mixer_flax never downloads. '
      f'On a machine with internet run `tfds build {name} --data_dir=DIR` and copy DIR/'
      f'{name.split("/")[0]} to {root} (or set config.data_dir to DIR).')


@functools.lru_cache(maxsize=8)
def _tfds_source(name: str, data_dir: str | None, manual_dir: str | None, image_key: str,
                 label_key: str, record_fn: str | None = None) -> Source:
  builder = prepare_tfds(name, data_dir=data_dir, manual_dir=manual_dir)
  features = builder.info.features
  if record_fn:  # Labels computed by `record_fn`; the class count comes from the config.
    to_record, num_classes, names = _import_fn(record_fn), 0, []
  else:
    for key in (image_key, label_key):
      if key not in features:
        raise ValueError(f'Dataset {name!r} has no feature {key!r}; its features are '
                         f'{list(features)}. Set config.image_key / config.label_key.')
    label = features[label_key]
    label = getattr(label, 'feature', label)  # Sequence(ClassLabel) -> ClassLabel (multi-label).
    if not isinstance(label, tfds.features.ClassLabel):
      raise ValueError(f'Feature {label_key!r} of {name!r} is {label}, not a ClassLabel.')
    num_classes, names = label.num_classes, list(label.names)
    to_record = lambda ex: {'image': ex[image_key], 'label': ex[label_key]}  # noqa: E731

  def sub(split: str, pi: int, pc: int):
    return tfds.split_for_jax_process(split, process_index=pi, process_count=pc)

  def count(split: str, pi: int, pc: int) -> int:
    return builder.info.splits[sub(split, pi, pc)].num_examples

  def records(split: str, pi: int, pc: int) -> tf.data.Dataset:
    ds = builder.as_dataset(
        split=sub(split, pi, pc), shuffle_files=False,
        decoders={image_key: tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(try_autocache=False, skip_prefetch=True))
    return ds.map(to_record)

  return Source(name=name, num_classes=num_classes, label_names=names, count=count,
                records=records)


def _import_fn(path: str) -> Callable[[dict], dict]:
  """'package.module:function' -> the function (config values must stay JSON-able)."""
  module, _, attr = path.partition(':')
  try:
    return getattr(importlib.import_module(module), attr)
  except (ImportError, AttributeError, ValueError) as e:
    raise ValueError(f'config.record_fn={path!r} is not an importable "module:function" '
                     f'({e}).') from e


def tf_options(threads: int = 0) -> tf.data.Options:
  """Deterministic tf.data options with a bounded private thread pool (0: auto)."""
  if threads <= 0:
    threads = max(1, min(16, (os.cpu_count() or 2) // 2))
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  options.autotune.cpu_budget = threads
  return options
