"""Device RandAugment: each reference op against Pillow, both op-selection modes, statistics."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from mixer_flax.data import augment
from mixer_flax.data import augment_ops as ops

MAGNITUDES = (3, 5, 10, 15, 20)


def _smooth_field(rs, h, w):
  coarse = rs.randint(0, 256, (h // 8 + 1, w // 8 + 1, 3))
  field = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w]
  return (field + rs.randint(-40, 40, field.shape)).clip(0, 255).astype(np.uint8)


def _jpeg_image(h=48, w=40):
  buf = io.BytesIO()
  Image.fromarray(_smooth_field(np.random.RandomState(1), h, w)).save(buf, 'JPEG', quality=90)
  return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))


def _digit(scale=4):
  from sklearn.datasets import load_digits
  d = np.round(load_digits().images[7] * 255 / 16).astype(np.uint8)
  return np.repeat(np.repeat(d, scale, 0), scale, 1)[..., None].repeat(3, -1)  # 32x32


IMAGES = {'random': np.random.RandomState(0).randint(0, 256, (30, 37, 3)).astype(np.uint8),
          'jpeg': _jpeg_image(), 'digit': _digit()}


@pytest.fixture(params=sorted(IMAGES))
def image(request):
  return IMAGES[request.param]


def run(name, image, magnitude, sign=1.0, center=(0, 0)):
  fn = augment.op_fn(name, magnitude=magnitude, sign=sign, center=jnp.asarray(center),
                     height=image.shape[0], width=image.shape[1])
  return np.asarray(fn(jnp.asarray(image)))


def max_diff(a, b):
  return int(np.abs(np.asarray(a, int) - np.asarray(b, int)).max())


def test_pointwise_ops_match_pil(image):
  pil = Image.fromarray(image)
  assert max_diff(run('autocontrast', image, 15), ImageOps.autocontrast(pil)) <= 1
  assert max_diff(run('equalize', image, 15), ImageOps.equalize(pil)) == 0
  assert max_diff(run('invert', image, 15), ImageOps.invert(pil)) == 0
  for m in MAGNITUDES:
    bits = int(m / 10 * 4)  # reference: posterize keeps int(4 m / 10) bits
    want = ImageOps.posterize(pil, bits) if bits else np.zeros_like(image)
    assert max_diff(run('posterize', image, m), want) == 0, m
    # reference: solarize threshold int(256 m / 10) as a uint8 constant, i.e. modulo 256
    threshold = int(m / 10 * 256) % 256
    assert max_diff(run('solarize', image, m), ImageOps.solarize(pil, threshold)) == 0
    factor = m / 10 * 1.8 + 0.1  # reference enhance factor, no random sign
    assert max_diff(run('brightness', image, m), ImageEnhance.Brightness(pil).enhance(factor)) <= 1
    addition = int(m / 10 * 110)  # no Pillow op: the reference definition
    want = np.where(image < 128, np.minimum(image.astype(int) + addition, 255), image)
    assert max_diff(run('solarize_add', image, m), want) == 0


def test_blend_ops_match_pil_given_the_reference_target(image):
  """color / contrast / sharpness = PIL's blend of the reference's target; targets vs PIL."""
  pil = Image.fromarray(image)
  grey = np.asarray(ops.grey(image))[..., 0]
  assert max_diff(grey, pil.convert('L')) <= 1  # tf.image.rgb_to_grayscale vs PIL's L
  smoothed = np.asarray(ops.smooth(image)).astype(int)
  pil_smooth = np.asarray(pil.filter(ImageFilter.SMOOTH), int)
  assert set(np.unique(smoothed - pil_smooth)) <= {-1, 0}  # reference truncates, PIL rounds
  h, w = image.shape[:2]
  level = min(h * w / 256, 255)  # reference's contrast "mean" (big_vision issue #109)
  flat = Image.new('RGB', pil.size, (int(level),) * 3)
  for m in MAGNITUDES:
    f = m / 10 * 1.8 + 0.1
    grey_rgb = Image.fromarray(np.repeat(grey[..., None], 3, -1))
    assert max_diff(run('color', image, m), Image.blend(grey_rgb, pil, f)) <= 1, m
    assert max_diff(run('contrast', image, m), Image.blend(flat, pil, f)) <= 1, m
    assert max_diff(run('sharpness', image, m),
                    Image.blend(Image.fromarray(smoothed.astype(np.uint8)), pil, f)) <= 1, m
    if m == 5:  # factor 1: every enhance op is the identity
      for name in ('color', 'contrast', 'brightness', 'sharpness'):
        np.testing.assert_array_equal(run(name, image, m), image)


def test_contrast_target_is_the_reference_constant():
  assert ops.contrast_degenerate(224, 224) == 196
  assert ops.contrast_degenerate(384, 384) == 255


def _near_tie(matrix, h, w, tol=1e-3):
  """Output pixels whose float64 source coordinate is within tol of a half integer."""
  v, u = np.mgrid[0:h, 0:w].astype(np.float64)
  src = [matrix[r, 0] * u + matrix[r, 1] * v + matrix[r, 2] for r in range(2)]
  return np.any([np.abs(np.abs(s - np.floor(s)) - 0.5) < tol for s in src], axis=0)


def _pil_affine(image, matrix):
  """PIL's AFFINE maps pixel centres (x + .5, y + .5) and floors; shift to index coords."""
  (a, b, c), (d, e, f) = matrix
  data = (a, b, c + 0.5 - 0.5 * a - 0.5 * b, d, e, f + 0.5 - 0.5 * d - 0.5 * e)
  return np.asarray(Image.fromarray(image).transform(
      image.shape[1::-1], Image.AFFINE, data, resample=Image.NEAREST, fillcolor=(128,) * 3))


def test_geometric_ops_match_pil(image):
  h, w = image.shape[:2]
  wide = np.tile(image, (1, 224 // w + 1, 1))[:, :224]  # translation is absolute: 224 px
  for m, sign in ((5, 1.0), (10, -1.0), (15, -1.0), (20, 1.0)):
    level = m / 10
    degrees, shear, pixels = sign * 30 * level, sign * 0.3 * level, sign * 100 * level
    rad = np.deg2rad(degrees)
    cos, sin = np.cos(rad), np.sin(rad)
    rot = np.array([[cos, -sin, ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2],
                    [sin, cos, ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2]])
    for name, matrix in (('rotate', rot), ('shear_x', [[1, shear, 0], [0, 1, 0]]),
                         ('shear_y', [[1, 0, 0], [shear, 1, 0]])):
      matrix = np.array(matrix, float)
      want = (np.asarray(Image.fromarray(image).rotate(
          degrees, resample=Image.NEAREST, fillcolor=(128,) * 3)) if name == 'rotate'
              else _pil_affine(image, matrix))
      keep = ~_near_tie(matrix, h, w)
      assert keep.mean() > 0.75
      np.testing.assert_array_equal(run(name, image, m, sign)[keep], want[keep], err_msg=name)
    for name, matrix in (('translate_x', [[1, 0, pixels], [0, 1, 0]]),
                         ('translate_y', [[1, 0, 0], [0, 1, pixels]])):
      want = _pil_affine(wide, np.array(matrix, float))
      np.testing.assert_array_equal(run(name, wide, m, sign), want, err_msg=name)


def test_cutout_is_a_grey_square_of_side_80_level():
  image = IMAGES['jpeg']
  for m, (cy, cx) in ((3, (5, 7)), (5, (0, 39)), (10, (47, 20)), (15, (30, 30))):
    pad = int(m / 10 * 40)
    want = image.copy()
    want[max(0, cy - pad):cy + pad, max(0, cx - pad):cx + pad] = 128
    np.testing.assert_array_equal(run('cutout', image, m, center=(cy, cx)), want)


def test_compact_and_switch_modes_agree():
  images = np.stack([IMAGES['random'][:30, :30], IMAGES['jpeg'][:30, :30],
                     IMAGES['digit'][:30, :30]] * 16)
  keys = jax.random.split(jax.random.key(3), len(images))
  outs = [np.asarray(jax.jit(lambda x, k, mode=mode, hist=hist: augment.randaugment_batch(
      x, k, num_layers=3, magnitude=15, mode=mode, histogram=hist))(images, keys))
          for mode, hist in (('switch', 'scatter'), ('compact', 'onehot_int8'))]
  np.testing.assert_array_equal(outs[0], outs[1])
  assert not np.array_equal(outs[0], images)
  # The backend's defaults (None) are one of the two.
  default = jax.jit(lambda x, k: augment.randaugment_batch(x, k, num_layers=3, magnitude=15))
  np.testing.assert_array_equal(np.asarray(default(images, keys)), outs[0])


def test_layers_draw_every_op_uniformly():
  from scipy import stats
  keys = jax.random.split(jax.random.key(0), 4000)
  op, sign, center = jax.vmap(lambda k: augment.draw(k, 20, 30))(keys)
  counts = np.bincount(np.asarray(op), minlength=16)
  assert stats.chisquare(counts).pvalue > 1e-3
  assert abs(float(np.mean(np.asarray(sign) > 0)) - 0.5) < 0.05
  assert np.asarray(center)[:, 0].max() == 19 and np.asarray(center)[:, 1].max() == 29


def test_paper_setting_gives_constant_images_only_where_the_reference_does():
  """m = 15, 2 layers, 224 px. The reference itself blanks an image for two op pairs
  (each drawn with probability 1/256): the same translation twice with the same sign
  (2 x 150 px > 224) and solarize_add (+165 below 128, so every pixel >= 128) then
  brightness x2.8. No other draw may give a constant image."""
  rs = np.random.RandomState(2)
  base = [_smooth_field(rs, 224, 224) for _ in range(6)]
  base += [np.asarray(Image.fromarray(IMAGES['jpeg']).resize((224, 224))),
           np.asarray(Image.fromarray(_digit()).resize((224, 224)))]
  images = np.stack(base * 75)  # 600 images
  keys = jax.random.split(jax.random.key(1), len(images))
  out = np.asarray(jax.jit(lambda x, k: augment.randaugment_batch(
      x, k, num_layers=2, magnitude=15))(images, keys))
  assert out.dtype == np.uint8 and out.shape == images.shape
  flat = out.reshape(len(out), -1)
  constant = (flat == flat[:, :1]).all(1)
  draws = [jax.vmap(lambda k, i=i: augment.draw(jax.random.fold_in(k, i), 224, 224))(keys)
           for i in range(2)]
  (op1, sign1, _), (op2, sign2, _) = [[np.asarray(x) for x in d] for d in draws]
  names = np.array(augment.OPS)
  inherent = (((names[op1] == 'translate_x') | (names[op1] == 'translate_y'))
              & (op1 == op2) & (sign1 == sign2))
  inherent |= (names[op1] == 'solarize_add') & (names[op2] == 'brightness')
  assert constant[inherent].all()
  assert constant[~inherent].mean() < 0.005 and not constant[~inherent].any()
  assert constant.mean() < 3 / 256
