"""Input pipeline: sklearn_digits via tfds, image folders, sharding, exact eval, resume."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from mixer_flax import config as config_lib
from mixer_flax import devices
from mixer_flax.data import pipeline, sources
from mixer_flax.data.datasets import sklearn_digits

DEVICES = 8  # tests/conftest.py simulates 8 CPU devices.


@pytest.fixture(scope='session')
def digits_dir(data_dir):
  return data_dir  # the session's digits (conftest.py)


def make_config(**overrides):
  c = config_lib.base_config()
  c.pp.update(crop='resize', area_min=0.3, flip=False, eval_mode='resize', eval_resize=8)
  c.pp.update(overrides.pop('pp', {}))
  c.update(dict(dataset='sklearn_digits', train_split='train', eval_split='test', image_size=8,
                batch=64, batch_eval=64, shuffle_buffer=500, prefetch=0), **overrides)
  return c


def digits_pixels():
  from sklearn.datasets import load_digits
  d = load_digits()
  return np.round(d.images * 255 / 16).astype(np.uint8), d.target


def to_uint8(images):
  """Host batches carry uint8 pixels (scaling happens on the device)."""
  images = np.asarray(images)
  assert images.dtype == np.uint8
  return images.astype(np.int64)


def color(i):
  return (i % 251, 10 + (i // 251) * 20, 200)


def write_folder(root, counts, size=4):
  """root/<split>/<class>/<j>.png, image i a solid colour(i); returns {colour: (i, class)}."""
  index, i = {}, 0
  for split, classes in counts.items():
    for name, n in classes.items():
      for j in range(n):
        os.makedirs(os.path.join(root, split, name), exist_ok=True)
        Image.fromarray(np.full((size, size, 3), color(i), np.uint8)).save(
            os.path.join(root, split, name, f'{j}.png'))
        index[color(i)] = (i, name)
        i += 1
  return index


def ids_of(batch, index):
  """Ids of the unmasked examples of a batch of solid-colour images."""
  images = to_uint8(batch['images']).reshape(-1, *batch['images'].shape[-3:])
  mask = np.asarray(batch.get('mask', np.ones(images.shape[0]))).reshape(-1)
  return [index[tuple(im[0, 0])][0] for im, m in zip(images, mask) if m > 0]


def test_digits_builds_offline_with_fixed_split(digits_dir):
  import tensorflow_datasets as tfds
  builder = sources.prepare_tfds(
      'sklearn_digits', data_dir=digits_dir, manual_dir=None)
  assert builder.is_prepared()
  assert builder.info.splits['train'].num_examples == 1437
  assert builder.info.splits['test'].num_examples == 360
  assert builder.info.features['label'].num_classes == 10
  images, targets = digits_pixels()
  test = list(tfds.as_numpy(builder.as_dataset(split='test')))
  assert sorted(ex['id'] for ex in test) == sorted(sklearn_digits.digits_split()['test'])
  per_class = np.bincount([ex['label'] for ex in test])
  assert per_class.min() >= 35 and per_class.max() <= 37  # Stratified: 10% of each class.
  for ex in test[:20]:
    np.testing.assert_array_equal(ex['image'][..., 0], images[ex['id']])
    assert ex['label'] == targets[ex['id']]
  info = pipeline.get_dataset_info(make_config(data_dir=digits_dir))
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (10, 1437, 360)
  assert info.label_names == tuple('0123456789')


def test_default_pipeline_yields_real_digits(digits_dir):
  config = make_config(data_dir=digits_dir)
  batch = next(pipeline.get_train_iterator(config, seed=0))
  assert batch['images'].shape == (DEVICES, 8, 8, 8, 3)
  assert batch['images'].dtype == np.uint8 and batch['labels'].dtype == np.int32
  assert batch['labels'].shape == (DEVICES, 8)  # class indices; one-hot on the device
  # Without augmentation at 8 px every image is an unchanged training digit (grey -> RGB).
  images, targets = digits_pixels()
  train_ids = sklearn_digits.digits_split()['train']
  lookup = {images[i].tobytes(): targets[i] for i in train_ids}
  got = to_uint8(batch['images']).reshape(-1, 8, 8, 3)
  assert (got == got[..., :1]).all()
  labels = batch['labels'].reshape(-1)
  for im, label in zip(got, labels):
    assert lookup[im[..., 0].astype(np.uint8).tobytes()] == label


@pytest.mark.parametrize('process_count', [1, 2])
def test_eval_counts_every_digit_once(digits_dir, process_count):
  config = make_config(data_dir=digits_dir, eval_split='train+test', batch_eval=128)
  images, targets = digits_pixels()
  seen, hist, lengths = [], np.zeros(10), []
  for p in range(process_count):
    batches = list(pipeline.get_eval_iterator(
        config, process_index=p, process_count=process_count, local_device_count=DEVICES))
    lengths.append(len(batches))
    for b in batches:
      assert b['mask'].shape == (DEVICES, 128 // process_count // DEVICES)
      mask = b['mask'].reshape(-1) > 0
      seen += [im.tobytes() for im in to_uint8(b['images']).reshape(-1, 8, 8, 3)[mask, :, :, 0]
               .astype(np.uint8)]
      hist += np.bincount(b['labels'].reshape(-1)[mask], minlength=10)
  assert len(set(lengths)) == 1  # Every process runs the same number of eval steps.
  assert len(seen) == 1797
  assert sorted(seen) == sorted(im.tobytes() for im in images)
  np.testing.assert_array_equal(hist, np.bincount(targets))


@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_of_37_images_each_exactly_once(tmp_path, process_count):
  index = write_folder(str(tmp_path), {'train': {'a': 2}, 'test': {'a': 20, 'b': 0, 'c': 17}})
  config = make_config(dataset='image_folder', folder_root=str(tmp_path), image_size=4,
                       batch_eval=16 * process_count)
  ids, lengths = [], []
  for p in range(process_count):
    batches = list(pipeline.get_eval_iterator(
        config, process_index=p, process_count=process_count, local_device_count=DEVICES))
    lengths.append(len(batches))
    ids += [i for b in batches for i in ids_of(b, index)]
  assert len(set(lengths)) == 1
  assert sorted(ids) == list(range(2, 39))


def test_two_processes_read_disjoint_shards_covering_the_split(tmp_path):
  index = write_folder(str(tmp_path), {'train': {'x': 30, 'y': 18}, 'test': {'x': 1}})
  config = make_config(dataset='image_folder', folder_root=str(tmp_path), image_size=4, batch=16)
  shards = []
  for p in range(2):
    it = pipeline.get_train_iterator(config, seed=3, process_index=p, process_count=2,
                                     local_device_count=DEVICES)
    shards.append([i for _ in range(3) for i in ids_of(next(it), index)])  # 3 x 8 = one epoch.
  assert len(set(shards[0])) == len(set(shards[1])) == 24
  assert not set(shards[0]) & set(shards[1])
  assert sorted(shards[0] + shards[1]) == list(range(48))


# RandAugment and mixup keys are read by the train step (device), not by the host pipeline.
AUGMENTED = dict(crop='inception', area_min=0.3, flip=True, randaug_layers=2,
                 randaug_magnitude=15, mixup_alpha=0.5)


def test_host_augmentations_deterministic_uint8_and_resumable(digits_dir):
  config = make_config(data_dir=digits_dir, image_size=16, batch=256, pp=AUGMENTED)
  first = pipeline.get_train_iterator(config, seed=7)
  run = [next(first) for _ in range(8)]  # 8 x 256 > 1437: crosses an epoch boundary.
  again = next(pipeline.get_train_iterator(config, seed=7))
  other = next(pipeline.get_train_iterator(config, seed=8))
  np.testing.assert_array_equal(again['images'], run[0]['images'])
  np.testing.assert_array_equal(again['labels'], run[0]['labels'])
  assert not np.array_equal(other['images'], run[0]['images'])
  for b in run:
    assert b['images'].dtype == np.uint8 and b['images'].shape == (DEVICES, 32, 16, 16, 3)
    assert b['labels'].dtype == np.int32 and b['labels'].shape == (DEVICES, 32)
  resumed = pipeline.get_train_iterator(config, seed=7, start_step=5)
  for step in range(5, 8):
    b = next(resumed)
    np.testing.assert_array_equal(b['images'], run[step]['images'])
    np.testing.assert_array_equal(b['labels'], run[step]['labels'])


def test_record_cache_changes_no_batch(digits_dir, monkeypatch):
  # Small train splits keep their records in memory after the first epoch (CPU time only).
  config = make_config(data_dir=digits_dir, image_size=16, batch=256, pp=AUGMENTED)
  cached = pipeline.get_train_iterator(config, seed=3)
  cached = [next(cached) for _ in range(12)]  # > 2 epochs of 1437 records
  monkeypatch.setattr(pipeline, 'CACHE_RECORDS_MAX', 0)
  plain = pipeline.get_train_iterator(config, seed=3)
  for b in cached:
    p = next(plain)
    np.testing.assert_array_equal(b['images'], p['images'])
    np.testing.assert_array_equal(b['labels'], p['labels'])


def test_folder_converts_grey_palette_and_rgba_to_rgb(tmp_path):
  rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
  grey = rgb[..., 0]
  for name, image in [('grey', Image.fromarray(grey, 'L')),
                      ('rgba', Image.fromarray(np.dstack([rgb, np.full((4, 4), 9, np.uint8)]))),
                      ('palette', Image.fromarray(rgb).convert('P'))]:
    os.makedirs(tmp_path / 'test' / name)
    image.save(tmp_path / 'test' / name / 'im.png')
  config = make_config(dataset='image_folder', folder_root=str(tmp_path), image_size=4,
                       eval_split='test', batch_eval=8)
  batch = next(pipeline.get_eval_iterator(config, process_count=1))
  images = to_uint8(batch['images']).reshape(-1, 4, 4, 3)
  labels = batch['labels'].reshape(-1)
  mask = batch['mask'].reshape(-1)
  assert mask.sum() == 3
  by_class = {['grey', 'palette', 'rgba'][lab]: im for lab, im, m in zip(labels, images, mask)
              if m}
  np.testing.assert_array_equal(by_class['grey'], np.dstack([grey] * 3))
  np.testing.assert_array_equal(by_class['rgba'], rgb)  # Alpha dropped.
  np.testing.assert_array_equal(
      by_class['palette'], np.asarray(Image.fromarray(rgb).convert('P').convert('RGB')))


def test_folder_errors_name_the_file_or_directory(tmp_path):
  write_folder(str(tmp_path / 'ok'), {'train': {'a': 3}, 'test': {'a': 2}})
  (tmp_path / 'ok' / 'train' / 'a' / 'broken.jpg').write_bytes(b'not an image at all')
  config = make_config(dataset='image_folder', folder_root=str(tmp_path / 'ok'), image_size=4,
                       batch=8)
  with pytest.raises(ValueError, match='broken.jpg'):
    pipeline.get_train_iterator(config, seed=0)
  # The test split has no bad file and still works.
  assert next(pipeline.get_eval_iterator(config, batch_size=8))['mask'].sum() == 2

  truncated = tmp_path / 'trunc'
  write_folder(str(truncated), {'test': {'a': 1}}, size=32)
  buf = (truncated / 'test' / 'a' / '0.png').read_bytes()
  (truncated / 'test' / 'a' / '0.png').write_bytes(buf[:len(buf) // 2])
  with pytest.raises(ValueError, match=r'0\.png'):
    pipeline.get_eval_iterator(make_config(
        dataset='image_folder', folder_root=str(truncated), image_size=4, batch_eval=8))

  write_folder(str(tmp_path / 'empty'), {'train': {'a': 2}})
  os.makedirs(tmp_path / 'empty' / 'train' / 'b')
  (tmp_path / 'empty' / 'train' / 'b' / 'notes.txt').write_text('no images here')
  with pytest.raises(ValueError, match=r'train/b holds no'):
    pipeline.get_dataset_info(make_config(
        dataset='image_folder', folder_root=str(tmp_path / 'empty')))
  with pytest.raises(FileNotFoundError, match='folder_root'):
    pipeline.get_dataset_info(make_config(
        dataset='image_folder', folder_root=str(tmp_path / 'missing')))


def test_unknown_or_unprepared_datasets_say_what_to_do(tmp_path):
  with pytest.raises(ValueError, match="'no_such_dataset'.*image_folder"):
    pipeline.get_dataset_info(make_config(dataset='no_such_dataset',
                                          data_dir=str(tmp_path)))
  manual = tmp_path / 'manual'
  manual.mkdir()
  with pytest.raises(FileNotFoundError, match=r'(?s)ILSVRC2012_img_train\.tar.*manual'):
    pipeline.get_dataset_info(make_config(
        dataset='imagenet2012', data_dir=str(tmp_path), manual_dir=str(manual)))
  with pytest.raises(FileNotFoundError, match='tfds build cifar10'):
    pipeline.get_dataset_info(make_config(dataset='cifar10', data_dir=str(tmp_path)))


def test_prefetch_to_device_shards_over_devices_for_pmap(digits_dir):
  config = make_config(data_dir=digits_dir, prefetch=2)
  batch = next(pipeline.get_eval_iterator(config))
  assert isinstance(batch['images'], jax.Array)
  local = jax.local_devices()
  for i, shard in enumerate(sorted(batch['images'].addressable_shards,
                                   key=lambda s: s.index[0].start)):
    assert shard.device == local[i] and shard.data.shape == (1, 8, 8, 8, 3)
  total = jax.pmap(lambda x: x.sum(), axis_name='i')
  total(batch['images'])  # Compile.
  with jax.transfer_guard('disallow'):  # pmap consumes the batch where it lies: no copy.
    sums = total(batch['images'])
  with pytest.raises(Exception, match='[Dd]isallowed'), jax.transfer_guard('disallow'):
    total(np.asarray(batch['images']))  # Whereas a host array has to be transferred.
  np.testing.assert_allclose(np.asarray(sums), np.asarray(batch['images']).sum((1, 2, 3, 4)),
                             rtol=1e-5)
  # Already-placed batches pass through prefetch_to_device unchanged.
  again = next(devices.prefetch_to_device(iter([batch]), 2))
  assert again['images'] is batch['images']


def test_prefetch_to_device_places_every_batch():
  # Host batches beyond the first `size` must be placed too (they were once passed on as
  # numpy, so pmap copied them inside the step).
  host = [{'x': np.full((jax.local_device_count(), 2), i, np.float32)} for i in range(5)]
  placed = list(devices.prefetch_to_device(iter(host), 2))
  assert [type(b['x']) for b in placed] == [type(placed[0]['x'])] * 5
  assert all(isinstance(b['x'], jax.Array) for b in placed)
  np.testing.assert_array_equal([np.asarray(b['x'])[0, 0] for b in placed], np.arange(5))


def test_imagenet21k_prepares_offline_from_manual_dir(tmp_path):
  import io
  import tarfile

  def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

  colours = {'n00000002': (250, 0, 0), 'n00000001': (0, 0, 250)}
  manual = tmp_path / 'manual'
  manual.mkdir()
  with tarfile.open(manual / 'fall11_whole.tar', 'w') as outer:
    for wnid, rgb in colours.items():
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as t:
        for j in range(2):
          jpeg = io.BytesIO()
          Image.fromarray(np.full((6, 6, 3), rgb, np.uint8)).save(jpeg, 'JPEG')
          add(t, f'{wnid}_{j}.JPEG', jpeg.getvalue())
      add(outer, f'{wnid}.tar', inner.getvalue())
  config = make_config(dataset='imagenet21k', data_dir=str(tmp_path / 'data'),
                       manual_dir=str(manual), train_split='full[1:]', eval_split='full',
                       image_size=4, batch_eval=8)
  info = pipeline.get_dataset_info(config)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (21843, 3, 4)
  batch = next(pipeline.get_eval_iterator(config, process_count=1))
  mask = batch['mask'].reshape(-1) > 0
  labels = batch['labels'].reshape(-1)[mask]
  blue = to_uint8(batch['images']).reshape(-1, 4, 4, 3)[mask][:, 0, 0, 2] > 128
  np.testing.assert_array_equal(labels, np.where(blue, 0, 1))  # n00000001 (blue) is class 0.
  assert sorted(labels.tolist()) == [0, 0, 1, 1]
