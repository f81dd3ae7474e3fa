"""RandAugment against TensorFlow, the oracle of the reference's uint8 semantics.

The reference (`distort_image_with_randaugment` of the TPU EfficientNet `autoaugment.py`;
big_vision's `pp/autoaugment.py` is the same code) runs its ops in tf.data on the host CPU.
`REFERENCE` writes each op with the TensorFlow ops the reference calls, on uint8 images, after
its code: Python ints stay Python ints next to uint8 tensors (TF makes them uint8 constants,
modulo 256), shifts are `tf.bitwise`, grey `tf.image.rgb_to_grayscale`, histograms
`tf.histogram_fixed_width`, warps the projective transform (NEAREST, fill 0) between the
reference's wrap / unwrap (fill 128). Every op at every magnitude 0..30 (both signs where the
reference draws one) agrees with ours within one grey level; geometric ops except float32 ties,
sharpness with the exact smoothing (its float32 convolution: the last test).
"""

import functools
import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mixer_flax.data import augment

MAGNITUDES = range(31)
SIGNED = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')


# ---------------------------------------------------------------------------
# The reference's ops and level -> argument mapping, in TensorFlow.

def reference_arg(name, m):
  """`level_to_arg` of the reference (magnitude m, _MAX_LEVEL 10), before the random sign."""
  level = m / 10.0
  return {'posterize': int(level * 4), 'solarize': int(level * 256),
          'solarize_add': int(level * 110), 'cutout': int(level * 40),
          'rotate': level * 30.0, 'shear_x': level * 0.3, 'shear_y': level * 0.3,
          'translate_x': level * 100.0, 'translate_y': level * 100.0}.get(name, level * 1.8 + 0.1)


def tf_blend(image1, image2, factor):
  if factor == 0.0:
    return tf.convert_to_tensor(image1)
  if factor == 1.0:
    return tf.convert_to_tensor(image2)
  image1, image2 = tf.cast(image1, tf.float32), tf.cast(image2, tf.float32)
  temp = image1 + factor * (image2 - image1)
  if 0.0 < factor < 1.0:
    return tf.cast(temp, tf.uint8)
  return tf.cast(tf.clip_by_value(temp, 0.0, 255.0), tf.uint8)


def tf_per_channel(image, fn):
  return tf.stack([fn(image[:, :, c]) for c in range(3)], 2)


def tf_autocontrast(image):
  def scale(im):
    lo, hi = tf.cast(tf.reduce_min(im), tf.float32), tf.cast(tf.reduce_max(im), tf.float32)
    if hi <= lo:
      return im
    s = 255.0 / (hi - lo)
    return tf.cast(tf.clip_by_value(tf.cast(im, tf.float32) * s + (-lo * s), 0.0, 255.0),
                   tf.uint8)
  return tf_per_channel(image, scale)


def tf_equalize(image):
  def scale(im):
    im = tf.cast(im, tf.int32)
    histo = tf.histogram_fixed_width(im, [0, 255], nbins=256)
    nonzero = tf.reshape(tf.gather(histo, tf.where(tf.not_equal(histo, 0))), [-1])
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
    if step == 0:
      return tf.cast(im, tf.uint8)
    lut = tf.concat([[0], ((tf.cumsum(histo) + step // 2) // step)[:-1]], 0)
    return tf.cast(tf.gather(tf.clip_by_value(lut, 0, 255), im), tf.uint8)
  return tf_per_channel(image, scale)


def tf_transform(image, transform):
  """The reference's warp: wrap (a ones channel), NEAREST projective transform, unwrap."""
  wrapped = tf.concat([image, tf.ones_like(image[..., :1])], 2)[None]
  out = tf.raw_ops.ImageProjectiveTransformV2(
      images=wrapped, transforms=tf.cast(tf.stack(transform), tf.float32)[None],
      output_shape=tf.shape(image)[:2], interpolation='NEAREST', fill_mode='CONSTANT')[0]
  return tf.where(out[..., 3:] == 0, tf.constant(128, tf.uint8), out[..., :3])


def tf_rotate(image, degrees):
  """tfa.image.rotate's matrix (float32) about the image centre."""
  radians = tf.constant(degrees, tf.float32) * (math.pi / 180.0)
  cos, sin = tf.cos(radians), tf.sin(radians)
  h = tf.cast(tf.shape(image)[0], tf.float32) - 1.0
  w = tf.cast(tf.shape(image)[1], tf.float32) - 1.0
  x_off = (w - (cos * w - sin * h)) / 2.0
  y_off = (h - (sin * w + cos * h)) / 2.0
  return tf_transform(image, [cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0])


def tf_smooth(image, *, exact=False):
  """The sharpness target: PIL's SMOOTH 3x3 / 13, truncated, the border kept.

  The reference convolves with the float32 kernel / 13 (`exact=False`); `exact=True` convolves
  with the integer kernel (exact in float32) and divides in integers.
  """
  weights = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, shape=[3, 3, 1, 1])
  kernel = tf.tile(weights if exact else weights / 13.0, [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel, [1, 1, 1, 1],
                                  padding='VALID')[0]
  smooth = tf.math.floordiv(smooth, 13.0) if exact else smooth
  smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
  inside = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
  return tf.where(inside == 1, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)


def tf_sharpness(image, factor, *, exact=False):
  return tf_blend(tf_smooth(image, exact=exact), image, factor)


def tf_contrast(image, factor):
  grey = tf.cast(tf.image.rgb_to_grayscale(image), tf.int32)
  mean = tf.reduce_sum(tf.cast(tf.histogram_fixed_width(grey, [0, 255], nbins=256),
                               tf.float32)) / 256.0
  degenerate = tf.clip_by_value(tf.ones_like(grey, tf.float32) * mean, 0.0, 255.0)
  return tf_blend(tf.image.grayscale_to_rgb(tf.cast(degenerate, tf.uint8)), image, factor)


def tf_cutout(image, pad, center):
  h, w = image.shape[0], image.shape[1]
  cy, cx = center
  lower, upper = max(0, cy - pad), max(0, h - cy - pad)
  left, right = max(0, cx - pad), max(0, w - cx - pad)
  mask = tf.pad(tf.zeros([h - (lower + upper), w - (left + right)], image.dtype),
                [[lower, upper], [left, right]], constant_values=1)
  return tf.where(tf.equal(mask[..., None], 0), tf.ones_like(image) * 128, image)


def tf_solarize_add(image, addition):
  added = tf.cast(tf.clip_by_value(tf.cast(image, tf.int64) + addition, 0, 255), tf.uint8)
  return tf.where(image < 128, added, image)


REFERENCE = {
    'autocontrast': lambda x, a: tf_autocontrast(x),
    'equalize': lambda x, a: tf_equalize(x),
    'invert': lambda x, a: 255 - x,
    'rotate': tf_rotate,
    'posterize': lambda x, bits: tf.bitwise.left_shift(tf.bitwise.right_shift(x, 8 - bits),
                                                       8 - bits),
    'solarize': lambda x, threshold: tf.where(x < threshold, x, 255 - x),
    'color': lambda x, f: tf_blend(tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x)), x, f),
    'contrast': tf_contrast,
    'brightness': lambda x, f: tf_blend(tf.zeros_like(x), x, f),
    'sharpness': lambda x, f: tf_sharpness(x, f, exact=True),  # see the test below
    'shear_x': lambda x, s: tf_transform(x, [1.0, s, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
    'shear_y': lambda x, s: tf_transform(x, [1.0, 0.0, 0.0, s, 1.0, 0.0, 0.0, 0.0]),
    'translate_x': lambda x, p: tf_transform(x, [1.0, 0.0, p, 0.0, 1.0, 0.0, 0.0, 0.0]),
    'translate_y': lambda x, p: tf_transform(x, [1.0, 0.0, 0.0, 0.0, 1.0, p, 0.0, 0.0]),
    'cutout': None,  # needs the centre: tf_cutout
    'solarize_add': tf_solarize_add,
}


# ---------------------------------------------------------------------------
# Images [6, 32, 40, 3]: real digits (grey, upscaled, RGB) and JPEG-decoded colour images.

def _images(h=32, w=40):
  from sklearn.datasets import load_digits
  d = np.round(load_digits().images[[0, 7, 13]] * 255 / 16).astype(np.uint8)
  digits = np.repeat(np.repeat(d, h // 8, 1), w // 8, 2)[..., None].repeat(3, -1)
  rs = np.random.RandomState(0)
  jpegs = []
  for _ in range(3):
    coarse = rs.randint(0, 256, (h // 6 + 1, w // 6 + 1, 3))
    field = np.kron(coarse, np.ones((6, 6, 1)))[:h, :w] + rs.randint(-30, 30, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(field.clip(0, 255).astype(np.uint8)).save(buf, 'JPEG', quality=85)
    jpegs.append(tf.io.decode_jpeg(buf.getvalue(), channels=3).numpy())
  return np.concatenate([digits, np.stack(jpegs)])


IMAGES = _images()
SIGNS = (1.0, -1.0)


def _signs(name):
  return SIGNS if name in SIGNED else (1.0,)


def _centre(m, h, w):
  return (7 * m) % h, (11 * m + 3) % w


@functools.cache
def ours(name):
  """uint8 [31, signs, 6, H, W, 3]: the op at every magnitude and sign (one jit per op; the
  sign is traced, as in training)."""
  h, w = IMAGES.shape[1:3]

  def one(x, m):
    op = lambda s: augment.op_fn(name, magnitude=m, sign=s,  # noqa: E731
                                 center=jnp.asarray(_centre(m, h, w)), height=h, width=w)(x)
    return jax.vmap(op)(jnp.asarray(_signs(name)))

  run = jax.vmap(lambda x: jnp.stack([one(x, m) for m in MAGNITUDES]), out_axes=2)
  return np.asarray(jax.jit(run)(IMAGES))


def reference(name):
  """The same from the TensorFlow ops (`REFERENCE[name]`)."""
  h, w = IMAGES.shape[1:3]
  fn = REFERENCE[name]
  out = np.zeros((len(MAGNITUDES), len(_signs(name)), *IMAGES.shape), np.uint8)
  for m in MAGNITUDES:
    for j, s in enumerate(_signs(name)):
      arg = reference_arg(name, m) * (s if name in SIGNED else 1)
      for i, x in enumerate(IMAGES):
        out[m, j, i] = (tf_cutout(tf.constant(x), arg, _centre(m, h, w)) if name == 'cutout'
                        else fn(tf.constant(x), arg))
  return out


def _near_tie(name, m, s, h, w, tol=1e-4):
  """Output pixels [H, W] whose exact source coordinate lies within tol of a half integer."""
  v, u = np.mgrid[0:h, 0:w].astype(np.float64)
  a = reference_arg(name, m) * s
  if name == 'rotate':
    r = np.deg2rad(a)
    c, n = np.cos(r), np.sin(r)
    src = [c * u - n * v + ((w - 1) - (c * (w - 1) - n * (h - 1))) / 2,
           n * u + c * v + ((h - 1) - (n * (w - 1) + c * (h - 1))) / 2]
  else:
    src = {'shear_x': [u + a * v, v], 'shear_y': [u, v + a * u],
           'translate_x': [u + a, v], 'translate_y': [u, v + a]}[name]
  return np.any([np.abs(np.abs(x - np.floor(x)) - 0.5) < tol for x in src], axis=0)


def _diff(a, b):
  return np.abs(a.astype(int) - b.astype(int)).max(axis=-1)  # over channels


@pytest.mark.parametrize('name', [o for o in augment.OPS if o not in SIGNED])
def test_pointwise_and_cutout_ops_match_the_reference_within_one_level(name):
  diff = _diff(ours(name), reference(name))
  worst = np.unravel_index(np.argmax(diff), diff.shape)
  assert diff.max() <= 1, (name, 'magnitude', worst[0], 'image', worst[2], int(diff.max()))


@pytest.mark.parametrize('name', SIGNED)
def test_geometric_ops_match_the_reference_except_float32_ties(name):
  """NEAREST rounds the float32 source coordinate: ours and TF's may round a coordinate within
  ~1e-5 of a half integer to different sides. Every other pixel is equal."""
  diff = _diff(ours(name), reference(name))
  h, w = IMAGES.shape[1:3]
  ties = np.stack([[_near_tie(name, m, s, h, w) for s in SIGNS] for m in MAGNITUDES])
  ties = np.broadcast_to(ties[:, :, None], diff.shape)
  assert not diff[~ties].any(), name
  assert (diff > 0).sum() <= 1e-3 * diff.size, (name, int((diff > 0).sum()))


def test_sharpness_smooths_exactly_where_the_reference_convolution_rounds_down():
  """Ours = the reference op with the exact integer smoothing (compared above); the reference's
  float32 kernel / 13 differs from it only by one level below, where the 3x3 weighted sum is a
  multiple of 13."""
  for x in IMAGES:
    ref = tf_smooth(tf.constant(x)).numpy().astype(int)
    exact = tf_smooth(tf.constant(x), exact=True).numpy().astype(int)
    xi = x.astype(int)
    box = sum(xi[i:i + x.shape[0] - 2, j:j + x.shape[1] - 2] for i in range(3) for j in range(3))
    multiple = np.pad((box + 4 * xi[1:-1, 1:-1]) % 13 == 0, ((1, 1), (1, 1), (0, 0)))
    assert set(np.unique(ref - exact)) <= {-1, 0}
    assert not (ref != exact)[~multiple].any()



def test_every_mode_applies_the_reference_ops():
  """One layer at m = 23 (solarize's threshold wraps, 588 -> 76; posterize's 9 bits clamp its
  shift) through randaugment_batch in every mode: each example is the reference op it drew."""
  m, h, w = 23, *IMAGES.shape[1:3]
  images = np.concatenate([IMAGES] * 8)
  keys = jax.random.split(jax.random.key(0), len(images))
  op, sign, center = (np.asarray(a) for a in jax.vmap(
      lambda k: augment.draw(jax.random.fold_in(k, 0), h, w))(keys))
  names = [augment.OPS[i] for i in op]
  assert {'solarize', 'posterize'} <= set(names)
  want, ties = np.empty_like(images), np.zeros(images.shape[:3], bool)
  for i, (x, name, s) in enumerate(zip(images, names, sign, strict=True)):
    arg = reference_arg(name, m) * (float(s) if name in SIGNED else 1)
    want[i] = (tf_cutout(tf.constant(x), arg, tuple(center[i])) if name == 'cutout'
               else REFERENCE[name](tf.constant(x), arg))
    ties[i] = _near_tie(name, m, float(s), h, w) if name in SIGNED else False
  for mode in [mode for mode in augment.MODES if mode != 'auto']:
    got = jax.jit(lambda x, k, mode=mode: augment.randaugment_batch(
        x, k, num_layers=1, magnitude=m, mode=mode))(images, keys)
    diff = _diff(np.asarray(got), want)
    assert diff[~ties].max() <= 1, (mode, names[int(np.argmax(diff.max(axis=(1, 2))))])
