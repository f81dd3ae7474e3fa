"""RandAugment (Cubuk et al. 2020) with core TensorFlow ops, stateless.

`num_layers` times, pick one of the 14 operations below uniformly at random and
apply it at a strength set by the magnitude m (the paper's Mixer runs use 2
layers and m = 10, 15 or 20). As in the reference TPU implementation, strength
is f = m / 10 and geometric ops extrapolate beyond m = 10; each signed op flips
its direction with probability 1/2:

  identity      -
  autocontrast  per channel stretch of [min, max] to [0, 255]
  equalize      per channel histogram equalisation (PIL's algorithm)
  rotate        +-30 f degrees about the centre
  solarize      invert pixels >= 256 - 256 min(f, 1)
  color         blend with the grey image, factor 1 +- 0.9 f (clipped >= 0)
  posterize     keep max(1, 8 - round(4 min(f, 1.75))) high bits (m=10: 4 bits)
  contrast      blend with the mean grey level, factor 1 +- 0.9 f
  brightness    blend with black, factor 1 +- 0.9 f
  sharpness     blend with a 3x3 smoothed image, factor 1 +- 0.9 f
  shear_x/y     shear 0.3 f (+-)
  translate_x/y shift by 0.45 f of the side (+-)

Geometric ops fill uncovered pixels with grey 128 and use nearest-neighbour
sampling. All ops map uint8 [H, W, 3] -> uint8 [H, W, 3].
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

Op = Callable[[tf.Tensor, tf.Tensor, float], tf.Tensor]
FILL = 128


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
  """PIL ImageEnhance: degenerate + factor * (image - degenerate), clipped to uint8."""
  d = tf.cast(degenerate, tf.float32)
  out = d + factor * (tf.cast(image, tf.float32) - d)
  return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _sign(seed: tf.Tensor) -> tf.Tensor:
  return tf.where(tf.random.stateless_uniform([], seed=seed) < 0.5, -1.0, 1.0)


def _enhance_factor(seed: tf.Tensor, f: float) -> tf.Tensor:
  return tf.maximum(1.0 + _sign(seed) * 0.9 * f, 0.0)


def _transform(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
  """Projective transform; matrix [8] maps output (x, y) to input coordinates."""
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.reshape(tf.cast(matrix, tf.float32), [1, 8]),
      output_shape=tf.shape(image)[:2], fill_value=float(FILL), interpolation='NEAREST',
      fill_mode='CONSTANT')
  return out[0]


def identity(image, seed, f):
  """Returns the image unchanged."""
  del seed, f
  return image


def autocontrast(image, seed, f):
  """Stretches each channel's [min, max] to [0, 255] (unchanged if constant)."""
  del seed, f
  x = tf.cast(image, tf.float32)
  lo = tf.reduce_min(x, axis=[0, 1], keepdims=True)
  hi = tf.reduce_max(x, axis=[0, 1], keepdims=True)
  scaled = (x - lo) * 255.0 / tf.maximum(hi - lo, 1.0)
  out = tf.where(hi > lo, scaled, x)
  return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _equalize_channel(channel: tf.Tensor) -> tf.Tensor:
  c = tf.cast(channel, tf.int32)
  histo = tf.math.bincount(tf.reshape(c, [-1]), minlength=256, maxlength=256)
  nonzero = tf.boolean_mask(histo, histo > 0)
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

  def apply() -> tf.Tensor:
    lut = (tf.cumsum(histo) + step // 2) // tf.maximum(step, 1)
    lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
    return tf.cast(tf.gather(lut, c), tf.uint8)

  return tf.cond(step > 0, apply, lambda: channel)


def equalize(image, seed, f):
  """Per channel histogram equalisation."""
  del seed, f
  return tf.stack([_equalize_channel(image[..., i]) for i in range(3)], axis=-1)


def rotate(image, seed, f):
  """Rotation by +-30 f degrees about the image centre."""
  angle = _sign(seed) * 30.0 * f * (3.141592653589793 / 180.0)
  h = tf.cast(tf.shape(image)[0], tf.float32) - 1.0
  w = tf.cast(tf.shape(image)[1], tf.float32) - 1.0
  cos, sin = tf.cos(angle), tf.sin(angle)
  x_off = (w - (cos * w - sin * h)) / 2.0
  y_off = (h - (sin * w + cos * h)) / 2.0
  return _transform(image, tf.stack([cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0]))


def solarize(image, seed, f):
  """Inverts pixels at or above the threshold 256 - 256 min(f, 1)."""
  del seed
  threshold = 256 - int(round(256 * min(f, 1.0)))
  return tf.where(tf.cast(image, tf.int32) >= threshold, 255 - image, image)


def color(image, seed, f):
  """Saturation: blend with the grey image."""
  grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  return _blend(grey, image, _enhance_factor(seed, f))


def posterize(image, seed, f):
  """Keeps the max(1, 8 - round(4 min(f, 1.75))) most significant bits."""
  del seed
  shift = 8 - max(1, 8 - int(round(4 * min(f, 1.75))))
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def contrast(image, seed, f):
  """Blend with the mean grey level."""
  mean = tf.reduce_mean(tf.cast(tf.image.rgb_to_grayscale(image), tf.float32))
  return _blend(tf.fill(tf.shape(image), mean), image, _enhance_factor(seed, f))


def brightness(image, seed, f):
  """Blend with black."""
  return _blend(tf.zeros_like(image), image, _enhance_factor(seed, f))


def sharpness(image, seed, f):
  """Blend with PIL's SMOOTH-filtered image (border pixels kept)."""
  x = tf.cast(image, tf.float32)[None]
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding='VALID')[0]
  smooth = tf.round(smooth)
  interior = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(interior > 0, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), x[0])
  return _blend(degenerate, image, _enhance_factor(seed, f))


def shear_x(image, seed, f):
  """Horizontal shear by 0.3 f."""
  s = _sign(seed) * 0.3 * f
  return _transform(image, tf.stack([1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def shear_y(image, seed, f):
  """Vertical shear by 0.3 f."""
  s = _sign(seed) * 0.3 * f
  return _transform(image, tf.stack([1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0]))


def translate_x(image, seed, f):
  """Horizontal shift by 0.45 f of the width."""
  dx = _sign(seed) * 0.45 * f * tf.cast(tf.shape(image)[1], tf.float32)
  return _transform(image, tf.stack([1.0, 0.0, -dx, 0.0, 1.0, 0.0, 0.0, 0.0]))


def translate_y(image, seed, f):
  """Vertical shift by 0.45 f of the height."""
  dy = _sign(seed) * 0.45 * f * tf.cast(tf.shape(image)[0], tf.float32)
  return _transform(image, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, -dy, 0.0, 0.0]))


OPS: dict[str, Op] = {
    'identity': identity, 'autocontrast': autocontrast, 'equalize': equalize,
    'rotate': rotate, 'solarize': solarize, 'color': color, 'posterize': posterize,
    'contrast': contrast, 'brightness': brightness, 'sharpness': sharpness,
    'shear_x': shear_x, 'shear_y': shear_y, 'translate_x': translate_x,
    'translate_y': translate_y,
}


def randaugment(image: tf.Tensor, *, seed: tf.Tensor, num_layers: int,
                magnitude: float) -> tf.Tensor:
  """Applies `num_layers` random ops of strength magnitude / 10.

  Args:
    image: uint8 [H, W, 3].
    seed: int64 [2], stateless seed.
    num_layers: number of ops applied in sequence (paper: 2).
    magnitude: m (paper: 10, 15 or 20).

  Returns:
    uint8 [H, W, 3].
  """
  f = float(magnitude) / 10.0
  ops = list(OPS.values())
  seeds = tf.random.experimental.stateless_split(seed, 2 * num_layers)

  def layer(i: tf.Tensor, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    choice = tf.random.stateless_uniform(
        [], seed=seeds[2 * i], minval=0, maxval=len(ops), dtype=tf.int32)
    op_seed = seeds[2 * i + 1]
    out = tf.switch_case(choice, [lambda op=op: op(image, op_seed, f) for op in ops])
    return i + 1, tf.ensure_shape(out, [None, None, 3])

  # A loop (not a Python unroll) traces the 14 ops once, whatever num_layers is.
  _, image = tf.while_loop(lambda i, _: i < num_layers, layer, [tf.constant(0), image],
                           shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None, 3])])
  return image
