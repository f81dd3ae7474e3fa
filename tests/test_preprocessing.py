"""Preprocessing and RandAugment ops against PIL and against their definitions."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from mixer_flax.data import preprocessing, randaugment

SEED = tf.constant([3, 4], tf.int64)


@pytest.fixture(scope='module')
def image():
  rng = np.random.RandomState(0)
  smooth = np.kron(rng.randint(40, 200, (6, 7, 3)), np.ones((4, 4, 1)))
  return (smooth + rng.randint(-30, 30, smooth.shape)).clip(0, 255).astype(np.uint8)  # 24x28


def run(op, image, f=1.0, seed=SEED):
  return op(tf.constant(image), seed, f).numpy()


def factor(f):
  return float(randaugment._enhance_factor(SEED, f))


def test_pointwise_ops_match_pil(image):
  pil = Image.fromarray(image)
  np.testing.assert_array_equal(run(randaugment.equalize, image), ImageOps.equalize(pil))
  np.testing.assert_array_equal(run(randaugment.posterize, image, 1.0), ImageOps.posterize(pil, 4))
  np.testing.assert_array_equal(run(randaugment.posterize, image, 2.0), ImageOps.posterize(pil, 1))
  np.testing.assert_array_equal(run(randaugment.solarize, image, 0.5),
                                ImageOps.solarize(pil, 128))
  np.testing.assert_array_equal(run(randaugment.solarize, image, 1.5), 255 - image)
  got = run(randaugment.autocontrast, image).astype(int)
  assert np.abs(got - np.asarray(ImageOps.autocontrast(pil), int)).max() <= 1
  np.testing.assert_array_equal(run(randaugment.identity, image), image)


@pytest.mark.parametrize('name, enhancer, tolerance', [
    ('color', ImageEnhance.Color, 2), ('contrast', ImageEnhance.Contrast, 2),
    ('brightness', ImageEnhance.Brightness, 1), ('sharpness', ImageEnhance.Sharpness, 1)])
def test_enhance_ops_match_pil(image, name, enhancer, tolerance):
  for f in (0.3, 1.0):
    got = run(randaugment.OPS[name], image, f).astype(int)
    want = np.asarray(enhancer(Image.fromarray(image)).enhance(factor(f)), int)
    assert np.abs(got - want).max() <= tolerance, (name, f)


def test_geometric_ops(image):
  for name in ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y'):
    np.testing.assert_array_equal(run(randaugment.OPS[name], image, 0.0), image)
  # translate_x at f = 20/(0.45 * 28) shifts by exactly 20 pixels, filling with grey.
  out = run(randaugment.translate_x, image, 20 / (0.45 * 28))
  left, right = out[:, :20], out[:, 8:]
  if (out[:, :8] == randaugment.FILL).all():  # shifted right
    np.testing.assert_array_equal(right, image[:, :20])
  else:
    assert (out[:, 8:] == randaugment.FILL).all()
    np.testing.assert_array_equal(left[:, :8], image[:, 20:])
  # rotate by 90 degrees (f = 3) of a square image is a lossless rot90.
  square = image[:24, :24]
  out = run(randaugment.rotate, square, 3.0)
  assert any(np.array_equal(out, np.rot90(square, k)) for k in (1, 3))


def test_randaugment_is_deterministic_and_keeps_shape(image):
  def ra(seed, m=15):
    return randaugment.randaugment(tf.constant(image), seed=tf.constant(seed, tf.int64),
                                   num_layers=2, magnitude=m).numpy()
  outs = [ra([0, s]) for s in range(12)]
  assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
  np.testing.assert_array_equal(ra([0, 5]), outs[5])
  assert len({o.tobytes() for o in outs}) > 6
  np.testing.assert_array_equal(ra([0, 1], m=0), randaugment.randaugment(
      tf.constant(image), seed=tf.constant([0, 1], tf.int64), num_layers=0, magnitude=0))


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
  scaled = preprocessing.scale_to_unit(tf.constant([0, 255], tf.uint8)).numpy()
  np.testing.assert_array_equal(scaled, [-1.0, 1.0])


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


def test_mixup_mixes_labels_like_images():
  images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (6, 4, 4, 3)), tf.float32)
  labels = tf.one_hot([0, 1, 2, 3, 4, 5], 6)
  mixed, mixed_labels = preprocessing.mixup(images, labels, seed=SEED, alpha=0.5)
  a = float(tf.reduce_max(mixed_labels[0]))
  assert 0.5 <= a <= 1.0
  np.testing.assert_allclose(mixed_labels.numpy().sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(mixed[0], a * images[0] + (1 - a) * images[5], rtol=1e-5, atol=1e-6)
  assert float(tf.reduce_max(tf.abs(mixed))) <= 1.0


def test_labels_one_hot_and_multi_hot():
  np.testing.assert_array_equal(preprocessing.encode_labels(tf.constant(2), 4), [0, 0, 1, 0])
  np.testing.assert_array_equal(
      preprocessing.encode_labels(tf.constant([3, 1, 3]), 4), [0, 1, 0, 1])
  np.testing.assert_array_equal(
      preprocessing.encode_labels(tf.zeros([0], tf.int64), 4), [0, 0, 0, 0])
