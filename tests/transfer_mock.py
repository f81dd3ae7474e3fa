"""Offline stand-ins for the VTAB datasets: `tfds.testing.mock_data` over real split sizes.

`mock_data(policy=USE_FILES)` reads each dataset's metadata from a directory; we write that
metadata from the installed tfds builder code with the split sizes of the tfds catalog
(`CATALOG_SPLITS`), so tfds itself does the split arithmetic ('train[63000:63200]' has 200
examples). Examples are random but consistent: example i of split s is always the same, and
a slice yields exactly its examples (tfds' own mock yields `num_examples` for any split).
"""

from __future__ import annotations

import contextlib
import zlib
from unittest import mock

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

# Split sizes of the tfds versions VTAB-1k uses (tfds catalog).
CATALOG_SPLITS: dict[str, dict[str, int]] = {
    'caltech101:3.*.*': dict(train=3060, test=6084),
    'cifar100:3.*.*': dict(train=50000, test=10000),
    'dtd:3.*.*': dict(train=1880, validation=1880, test=1880),
    'oxford_flowers102:2.*.*': dict(train=1020, validation=1020, test=6149),
    'oxford_iiit_pet:4.*.*': dict(train=3680, test=3669),
    'sun397/tfds:4.*.*': dict(train=76128, validation=10875, test=21750),
    'svhn_cropped:3.*.*': dict(train=73257, test=26032, extra=531131),
    'patch_camelyon:2.*.*': dict(train=262144, validation=32768, test=32768),
    'eurosat/rgb:2.*.*': dict(train=27000),
    'resisc45:3.*.*': dict(train=31500),
    'diabetic_retinopathy_detection/btgraham-300:3.*.*': dict(
        train=35126, validation=10906, test=42670, sample=10),
    'clevr:3.*.*': dict(train=70000, validation=15000, test=15000),
    'dmlab:2.0.1': dict(train=65550, validation=22628, test=22735),
    'kitti:3.*.*': dict(train=6347, validation=423, test=711),
    'dsprites:2.*.*': dict(train=737280),
    'smallnorb:2.*.*': dict(train=24300, test=24300),
}
IMAGE_SIDE = 24  # side of generated images whose size the dataset leaves open
# mock_data wraps as_dataset in a global fake file system, which races with the trainer's
# background checkpoint writes; the unwrapped method reads only our metadata directory.
_AS_DATASET = tfds.core.DatasetBuilder.as_dataset


def write_metadata(data_dir: str, name: str, splits: dict[str, int]) -> None:
  """dataset_info.json (+ features) of `name` with the given split sizes."""
  builder = tfds.builder(name, data_dir=data_dir)
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0) for s, n in splits.items()]))
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def _fake(feature, rng: np.random.Generator, binary_images: bool):
  f = tfds.features
  if isinstance(feature, f.FeaturesDict):
    return {k: _fake(v, rng, binary_images) for k, v in feature.items()}
  if isinstance(feature, f.Sequence):
    n = int(rng.integers(3, 11))  # CLEVR has 3..10 objects
    inner = feature.feature
    if isinstance(inner, f.FeaturesDict):
      return {k: [_fake(v, rng, binary_images) for _ in range(n)] for k, v in inner.items()}
    return [_fake(inner, rng, binary_images) for _ in range(n)]
  if isinstance(feature, f.Image):
    shape = [s or IMAGE_SIDE for s in feature.shape]
    return rng.integers(0, 2 if binary_images else 256, size=shape, dtype=np.uint8)
  if isinstance(feature, f.ClassLabel):
    return int(rng.integers(feature.num_classes))
  if isinstance(feature, f.BBoxFeature):
    y, x = np.sort(rng.random(2)), np.sort(rng.random(2))
    return f.BBox(ymin=y[0], xmin=x[0], ymax=y[1], xmax=x[1])
  if isinstance(feature, f.Text):
    return 'x'
  shape = [s or 3 for s in feature.shape]
  dtype = np.dtype(feature.np_dtype)
  if dtype.kind == 'f':
    return rng.uniform(0.5, 25.0, size=shape).astype(dtype)  # depths (m) span the bins
  if dtype.kind in 'iu':
    return rng.integers(0, 5, size=shape).astype(dtype)
  if dtype.kind == 'b':
    return rng.random(size=shape) < 0.5
  return np.full(shape, b'x', dtype=object) if shape else b'x'


def example(builder, split: str, index: int) -> dict:
  """Example `index` of `split` (not encoded): the same on every call."""
  rng = np.random.default_rng([zlib.crc32(f'{builder.name}/{split}'.encode()), index])
  return _fake(builder.info.features, rng, binary_images=builder.name == 'dsprites')


def _stack(x):
  if isinstance(x, dict):
    return {k: _stack(v) for k, v in x.items()}
  return np.stack([np.asarray(v) for v in x]) if isinstance(x, list) else x


def _as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
  del read_config, shuffle_files
  instruction = (tfds.core.ReadInstruction.from_spec(split) if isinstance(split, str)
                 else split)
  splits = self.info.splits
  keys = [(a.splitname, i) for a in instruction.to_absolute(splits)
          for i in range(a.from_ or 0, splits[a.splitname].num_examples if a.to is None else a.to)]
  features = self.info.features
  specs = features.get_serialized_info()

  def generate():
    for s, i in keys:  # Sequence features encode to lists: stack them for tf.data.
      yield _stack(features.encode_example(example(self, s, i)))

  ds = tf.data.Dataset.from_generator(
      generate, output_types=tf.nest.map_structure(lambda t: t.dtype, specs),
      output_shapes=tf.nest.map_structure(lambda t: t.shape, specs))
  ds = ds.apply(tf.data.experimental.assert_cardinality(len(keys)))
  return ds.map(lambda ex: features.decode_example(ex, decoders=decoders))


@contextlib.contextmanager
def mock_datasets(data_dir: str, splits: dict[str, dict[str, int]] | None = None):
  """Within the block, the datasets of `splits` (default: all VTAB) look prepared in data_dir."""
  for name, sizes in (CATALOG_SPLITS if splits is None else splits).items():
    write_metadata(data_dir, name, sizes)
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=data_dir,
                              as_dataset_fn=_as_dataset):
    with mock.patch.object(tfds.core.DatasetBuilder, 'as_dataset', _AS_DATASET):
      yield
