"""Host preprocessing (tf.data): eval crops, Inception crop, host label encoding.

RandAugment and mixup run on the device: tests/test_data_augment.py, tests/test_data_on_device.py.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mixer_flax.data import preprocessing


@pytest.fixture(scope='module')
def image():
  rng = np.random.RandomState(0)
  smooth = np.kron(rng.randint(40, 200, (6, 7, 3)), np.ones((4, 4, 1)))
  return (smooth + rng.randint(-30, 30, smooth.shape)).clip(0, 255).astype(np.uint8)  # 24x28


def encode(array, fmt):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, quality=100, subsampling=0)
  return buf.getvalue()


def test_eval_modes_crop_the_centre():
  # 20 x 40: red left half, blue right half.
  two = np.zeros((20, 40, 3), np.uint8)
  two[:, :20, 0] = 255
  two[:, 20:, 2] = 255
  png = tf.constant(encode(two, 'PNG'))
  small = preprocessing.eval_image(png, image_size=8, mode='resize_small_crop',
                                   eval_resize=10).numpy()  # 10 x 20, columns 6..13
  assert small.shape == (8, 8, 3)
  assert (small[:, :3, 0] == 255).all() and (small[:, 5:, 2] == 255).all()
  square = preprocessing.eval_image(png, image_size=8, mode='resize_crop',
                                    eval_resize=10).numpy()  # 10 x 10, columns 1..8
  assert (square[:, :3, 0] == 255).all() and (square[:, 5:, 2] == 255).all()
  plain = preprocessing.eval_image(png, image_size=8, mode='resize', eval_resize=0).numpy()
  assert (plain[:, :3, 0] == 255).all() and (plain[:, 5:, 2] == 255).all()


def big_vision_eval(image, resize, crop):
  """big_vision's 'decode|resize_small(resize)|central_crop(crop)' in TF ops (its pp/ops_image)."""
  h, w = image.shape[:2]
  factor = tf.cast(resize, tf.float32) / tf.cast(min(h, w), tf.float32)
  size = [tf.cast(tf.round(tf.cast(s, tf.float32) * factor), tf.int32) for s in (h, w)]
  out = tf.image.resize(image, size, method='area', antialias=False)
  out = tf.cast(tf.clip_by_value(out, 0, 255), tf.uint8)
  dy, dx = (int(size[0]) - crop) // 2, (int(size[1]) - crop) // 2
  return out[dy:dy + crop, dx:dx + crop].numpy()


@pytest.mark.parametrize('shape,resize,crop', [((37, 53), 20, 16), ((60, 41), 28, 24),
                                               ((9, 12), 16, 14)])
def test_resize_small_crop_is_big_visions_area_resize(shape, resize, crop):
  rng = np.random.RandomState(sum(shape))
  smooth = np.kron(rng.randint(0, 256, (shape[0] // 3 + 1, shape[1] // 3 + 1, 3)),
                   np.ones((3, 3, 1)))[:shape[0], :shape[1]]
  array = (smooth + rng.randint(-40, 40, smooth.shape)).clip(0, 255).astype(np.uint8)
  for fmt in ('PNG', 'JPEG'):
    data = encode(array, fmt)
    got = preprocessing.eval_image(tf.constant(data), image_size=crop, mode='resize_small_crop',
                                   eval_resize=resize).numpy()
    np.testing.assert_array_equal(got, big_vision_eval(tf.io.decode_image(data, 3), resize, crop))


def test_inception_crop_same_window_for_jpeg_and_png(image):
  jpeg, png = encode(image, 'JPEG'), encode(image, 'PNG')
  decoded_jpeg = tf.io.decode_jpeg(jpeg).numpy()
  for seed in range(5):
    s = tf.constant([1, seed], tf.int64)
    y, x, h, w = preprocessing._crop_window(tf.constant([24, 28, 3]), seed=s,
                                            area_min=0.05).numpy()
    assert 0.05 * 24 * 28 * 0.8 <= h * w <= 24 * 28 and 0.6 <= w / h <= 1.5
    np.testing.assert_array_equal(preprocessing.decode_and_inception_crop(
        tf.constant(png), seed=s, area_min=0.05), image[y:y + h, x:x + w])
    np.testing.assert_array_equal(preprocessing.decode_and_inception_crop(
        tf.constant(jpeg), seed=s, area_min=0.05), decoded_jpeg[y:y + h, x:x + w])


def test_inception_crop_window_is_the_references():
  """big_vision's decode_jpeg_and_inception_crop(area_min=5) sampler arguments (aspect 0.75 to
  1.33, no boxes, TF's default attempts), drawn with TF's stateless sampler from our seed."""
  for shape in ([24, 28, 3], [224, 300, 3], [300, 180, 3]):
    for i in range(20):
      seed = tf.constant([3, i], tf.int64)
      begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
          tf.constant(shape), tf.zeros([0, 0, 4], tf.float32), seed=seed,
          area_range=(5 / 100, 100 / 100), aspect_ratio_range=(0.75, 1.33),
          min_object_covered=0, use_image_if_no_bounding_boxes=True)
      want = [begin[0], begin[1], size[0], size[1]]
      np.testing.assert_array_equal(preprocessing._crop_window(
          tf.constant(shape), seed=seed, area_min=0.05), want)


def test_host_labels_are_indices_or_uint8_multi_hot():
  index = preprocessing.encode_labels(tf.constant(2, tf.int64), 4)
  assert index.dtype == tf.int32 and int(index) == 2
  multi = preprocessing.encode_labels(tf.constant([3, 1, 3]), 4)
  assert multi.dtype == tf.uint8
  np.testing.assert_array_equal(multi, [0, 1, 0, 1])
  np.testing.assert_array_equal(preprocessing.encode_labels(tf.zeros([0], tf.int64), 4),
                                [0, 0, 0, 0])
