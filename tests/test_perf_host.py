"""perf/jpeg_folder.py, perf/decode_levers.py, perf/input_rate.py --jpeg_folder: the host side."""

import filecmp
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mixer_flax.data import preprocessing
from mixer_flax.perf import decode_levers, input_rate, jpeg_folder


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return jpeg_folder.write_jpeg_folder(str(tmp_path_factory.mktemp('jpegs')), num_images=24,
                                       processes=1)


def test_folder_is_the_same_whatever_the_writer_processes(folder, tmp_path):
  other = jpeg_folder.write_jpeg_folder(str(tmp_path / 'b'), num_images=24, processes=2)
  names = sorted(os.path.relpath(os.path.join(d, f), folder)
                 for d, _, files in os.walk(folder) for f in files)
  assert len(names) == 24 and sum(n.startswith('test') for n in names) == 4  # 24 // 6
  assert filecmp.cmpfiles(folder, other, names, shallow=False)[0] == names
  assert jpeg_folder.write_jpeg_folder(folder, num_images=99) == folder  # kept as it is
  assert jpeg_folder.folder_stats(folder)[0] == 24


def test_folder_jpegs_are_quality_96_without_chroma_subsampling(folder):
  path = os.path.join(folder, 'train', 'class_04', '00004.jpg')
  with Image.open(path) as image:
    assert image.mode == 'RGB' and image.format == 'JPEG'
    rng = np.random.default_rng([0, 4])
    assert image.size == jpeg_folder.image_size(rng)[::-1]  # PIL: (width, height)
    reference = io.BytesIO()
    Image.new('RGB', (16, 16)).save(reference, 'JPEG', quality=96, subsampling=0)
    assert image.quantization == Image.open(reference).quantization
    assert image.layer == Image.open(reference).layer  # 4:4:4 sampling factors


def test_size_model():
  sizes = np.array([jpeg_folder.image_size(np.random.default_rng([0, i])) for i in range(4000)])
  long, short = sizes.max(1), sizes.min(1)
  assert 0.82 < np.mean(long == 500) < 0.87  # 84.5% by construction
  assert long.min() >= 150 and long.max() <= 2500 and np.all(short >= 0.5 * long - 1)
  assert 0.8 < np.mean(sizes[:, 1] > sizes[:, 0]) < 0.9  # 85% landscape (width > height)


def test_decode_levers_against_tensorflow(folder):
  blob = open(os.path.join(folder, 'train', 'class_04', '00004.jpg'), 'rb').read()
  h, w = np.asarray(tf.io.extract_jpeg_shape(blob))[:2]
  big = tf.constant([0, 0, int(h), int(w)])  # the whole image: >= 2 x 100 on both sides
  default = decode_levers.crop(blob, big, size=100, lever='default')
  expected = preprocessing.resize(tf.io.decode_jpeg(blob, channels=3), (100, 100))
  np.testing.assert_array_equal(default, expected)
  np.testing.assert_array_equal(decode_levers.crop(blob, big, size=100, lever='resize_uint8'),
                                expected)  # the same pixels
  r = int(decode_levers.ratio_of(big, 100))
  assert r == max(k for k in (1, 2, 4, 8) if min(h, w) >= k * 100)
  scaled = tf.io.decode_jpeg(blob, channels=3, ratio=r)  # the whole scaled image
  np.testing.assert_array_equal(decode_levers.crop(blob, big, size=100, lever='ratio'),
                                preprocessing.resize(scaled, (100, 100)))
  small = tf.constant([3, 5, 120, 150])  # too small for any ratio: the default's decode
  assert int(decode_levers.ratio_of(small, 100)) == 1
  np.testing.assert_array_equal(decode_levers.crop(blob, small, size=100, lever='ratio'),
                                decode_levers.crop(blob, small, size=100, lever='default'))


@pytest.mark.slow
def test_jpeg_folder_rates_smoke(folder, capsys):
  results = input_rate.jpeg_folder_rates(input_rate.argparse.Namespace(
      jpeg_folder=folder, num_images=24, config=input_rate.DIGITS, batch=8, set=[],
      tf_threads='1,2', batches=1, rounds=2))  # batch: a multiple of the 8 test devices
  assert set(results) == {1, 2}
  for r in results.values():
    assert r['cpu_s_per_image'] > 0
    assert r['img_per_s_per_core'] == pytest.approx(1 / r['cpu_s_per_image'])
  assert 'cores needed by a step consuming R img/s' in capsys.readouterr().out
