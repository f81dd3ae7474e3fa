"""RandAugment on the device in JAX: the reference op list, arguments and uint8 rounding.

Reference: `distort_image_with_randaugment` of the TPU EfficientNet `autoaugment.py`
(big_vision's `pp/autoaugment.py` is a copy), which the paper's recipe uses. Each of
`num_layers` layers picks one of the 16 ops below uniformly (no identity op) and applies
it with the magnitude m (paper: 2 layers, m = 10, 15 or 20); `level = m / 10`
(`_MAX_LEVEL` = 10). Images are uint8 [H, W, 3]; `trunc` is a cast to uint8 after the
stated clip (the reference truncates, PIL mostly truncates too); `+-` is a random sign.

  autocontrast  per channel: lo, hi = min, max; if hi > lo: trunc(clip(x * 255/(hi - lo)
                - lo * 255/(hi - lo))) else x
  equalize      per channel PIL equalize: step = (count - count of the last non-empty bin)
                // 255; lut[v] = (#pixels < v + step // 2) // step, clip 255; x if step == 0
  invert        255 - x
  rotate        +-30 level degrees about the centre ((W-1)/2, (H-1)/2); tfa.image.rotate
  posterize     (x >> s) << s, s = min((8 - int(4 level)) mod 256, 7) (**): 1 bit at m <= 2, >= 23
  solarize      x if x < int(256 level) mod 256 else 255 - x (**): m = 10, 20, 30 invert every
                pixel, m = 15 inverts x >= 128
  color         blend(grey, x, f); grey = trunc(255.5 * (0.2989 r + 0.587 g + 0.114 b) / 255)
  contrast      blend(d, x, f) with the constant d = trunc(min(H W / 256, 255)) (*)
  brightness    blend(0, x, f)
  sharpness     blend(s, x, f); s = trunc(clip(SMOOTH 3x3 [1 1 1; 1 5 1; 1 1 1] / 13)),
                border pixels of s = x
  shear_x       output (u, v) <- input (u +- 0.3 level v, v)
  shear_y       output (u, v) <- input (u, v +- 0.3 level u)
  translate_x   output (u, v) <- input (u +- 100 level, v)  (pixels, not a fraction)
  translate_y   output (u, v) <- input (u, v +- 100 level)
  cutout        a (2p x 2p) square, p = int(40 level), centred at a uniformly drawn pixel
                (rows [max(0, cy - p), min(H, cy + p)), same for columns), set to 128
  solarize_add  x < 128: trunc(clip(x + int(110 level))); else x

with f = 1.8 level + 0.1 (no random sign; m = 15: f = 2.8) and blend(d, x, f) =
trunc(clip(d + f (x - d), 0, 255)) in float32. Geometric ops: for each output pixel
(u = column, v = row) the source pixel is round(A (u, v) + t) with round half away
from zero (std::round of TF's NEAREST projective transform); sources outside the image
take the reference fill 128 (its wrap/unwrap of a ones channel).

(*) The reference's contrast "mean" sums the histogram (= H W) and divides by 256
instead of averaging the grey levels (big_vision issue #109; 196 at 224 px); we keep
it, as the paper's runs had it. (**) The reference passes Python ints to TF ops on uint8
images: TF makes them uint8 constants (modulo 256), and its CPU kernels (tf.data runs there)
clamp a uint8 shift to [0, 7]; we follow both (tests/test_data_augment_reference.py compares
every op at m = 0..30 with TensorFlow). Where the reference itself differs from PIL (tests):
(**), contrast (that mean), color (PIL's grey is round((19595 r + 38470 g + 7471 b) / 2^16)),
sharpness (PIL rounds the smoothed image) and geometric ops (PIL samples pixel centres in
float64, we in float32: only coordinates within ~1e-5 of a half integer differ).

With 2 layers the reference blanks an image (every pixel one value) for two op pairs from
m = 12 at 224 px, each drawn with probability 1/256: the same translation twice with the same
sign (2 x 100 level px > 224) and solarize_add then brightness (every pixel lifted to >= 128,
then times 1.8 level + 0.1 > 2): ~0.8% of the images, kept as the paper's recipe had it
(tests/test_data_augment.py: at m = 15 no other draw gives a constant image). An image with
flat borders can also be blanked by a translation then contrast (m >= 16 maps the fill 128 and
dark pixels to 0). Solarize never blanks an image (threshold 0 inverts it).

Implementation (augment_ops.py; dm-pix is not a dependency and map_coordinates rounds half
to even): point-wise ops are 256-entry tables per channel, geometric ops 2x3 matrices for one
nearest-neighbour gather. Two modes, bit-identical (tested), picked per backend
(mixer_flax/backends.py): 'switch' maps over the examples and runs only the drawn op
(lax.switch); 'compact' applies `select_op` to the whole batch (every op's table and warp
computed, then selected), counting histograms only where equalize was drawn (augment_compact.py).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mixer_flax import backends
from mixer_flax.data import augment_compact
from mixer_flax.data import augment_ops as ops

OPS = ('autocontrast', 'equalize', 'invert', 'rotate', 'posterize', 'solarize', 'color',
       'contrast', 'brightness', 'sharpness', 'shear_x', 'shear_y', 'translate_x',
       'translate_y', 'cutout', 'solarize_add')
MAX_LEVEL = 10.0
CUTOUT_CONST = 40
TRANSLATE_CONST = 100
MODES = ('compact', 'switch')
_LUT_OPS = ('autocontrast', 'equalize', 'invert', 'posterize', 'solarize', 'contrast',
            'brightness', 'solarize_add')
_AFFINE_OPS = ('rotate', 'shear_x', 'shear_y', 'translate_x', 'translate_y')


def op_args(magnitude: float) -> dict[str, float | int]:
  """The reference's magnitude -> argument mapping (before the random sign)."""
  level = float(magnitude) / MAX_LEVEL
  return dict(degrees=level * 30.0, bits=int(level * 4), threshold=int(level * 256),
              factor=level * 1.8 + 0.1, shear=level * 0.3, pixels=level * TRANSLATE_CONST,
              pad=int(level * CUTOUT_CONST), addition=int(level * 110))


def draw(key: jax.Array, height: int, width: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One layer's randomness: op index (uniform over OPS), sign (+-1.0), cutout centre [2]."""
  k_op, k_sign, k_row, k_col = jax.random.split(key, 4)
  op = jax.random.randint(k_op, (), 0, len(OPS))
  sign = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0).astype(jnp.float32)
  center = jnp.stack([jax.random.randint(k_row, (), 0, height),
                      jax.random.randint(k_col, (), 0, width)])
  return op, sign, center


def _luts(a: dict, height: int, width: int, histogram: str) -> dict[str, Callable]:
  """Table builders: name -> (uint8 image [H, W, 3]) -> lookup table [3, 256]."""
  return {'autocontrast': lambda x: ops.autocontrast_lut(*ops.channel_range(x)),
          'equalize': lambda x: ops.equalize_lut(ops.histogram(x, histogram)),
          'invert': lambda _: ops.invert_lut(),
          'posterize': lambda _: ops.posterize_lut(a['bits']),
          'solarize': lambda _: ops.solarize_lut(a['threshold']),
          'contrast': lambda _: ops.blend_lut(ops.contrast_degenerate(height, width),
                                              a['factor']),
          'brightness': lambda _: ops.blend_lut(0, a['factor']),
          'solarize_add': lambda _: ops.solarize_add_lut(a['addition'])}


def _matrices(a: dict, sign: jax.Array, height: int, width: int) -> dict[str, jax.Array]:
  return {'rotate': ops.rotate_matrix(sign * a['degrees'], height, width),
          'shear_x': ops.shear_x_matrix(sign * a['shear']),
          'shear_y': ops.shear_y_matrix(sign * a['shear']),
          'translate_x': ops.translate_matrix(sign * a['pixels'], 0.0),
          'translate_y': ops.translate_matrix(0.0, sign * a['pixels'])}


def _pixel_ops(a: dict, center: jax.Array) -> dict[str, Callable]:
  return {'color': lambda x: ops.blend(ops.grey(x), x, a['factor']),
          'sharpness': lambda x: ops.blend(ops.smooth(x), x, a['factor']),
          'cutout': lambda x: ops.cutout(x, a['pad'], center)}


def op_fn(name: str, *, magnitude: float, sign: jax.Array | float = 1.0,
          center: jax.Array | None = None, height: int, width: int,
          histogram: str = 'scatter') -> Callable:
  """The op OPS[name] at `magnitude` as a function uint8 [H, W, 3] -> uint8 [H, W, 3]."""
  a = op_args(magnitude)
  luts = _luts(a, height, width, histogram)
  if name in luts:
    return lambda x: ops.apply_lut(x, luts[name](x))
  if name in _AFFINE_OPS:
    return lambda x: ops.affine(x, _matrices(a, jnp.float32(sign), height, width)[name])
  center = jnp.zeros(2, jnp.int32) if center is None else center
  return _pixel_ops(a, center)[name]


def apply_op(image: jax.Array, op: jax.Array, sign: jax.Array, center: jax.Array, *,
             magnitude: float, histogram: str = 'scatter') -> jax.Array:
  """OPS[op] (a traced int) on one uint8 image [H, W, 3]; lax.switch runs one branch."""
  h, w = image.shape[:2]
  return jax.lax.switch(op, [op_fn(name, magnitude=magnitude, sign=sign, center=center,
                                   height=h, width=w, histogram=histogram)
                             for name in OPS], image)


# Slot of each op in select_op's stacked tables / matrices; the last slot is the identity.
_LUT_SLOT = np.array([_LUT_OPS.index(o) if o in _LUT_OPS else len(_LUT_OPS) for o in OPS])
_MAT_SLOT = np.array([_AFFINE_OPS.index(o) if o in _AFFINE_OPS else len(_AFFINE_OPS)
                      for o in OPS])


def select_op(image: jax.Array, op: jax.Array, sign: jax.Array, center: jax.Array, *,
              magnitude: float, histogram: str = 'scatter',
              hist: jax.Array | None = None) -> jax.Array:
  """Same as apply_op without control flow (for vmap): every candidate reads the layer input.

  One warp and one lookup serve the 13 table and warp ops (the drawn op's table, the
  identity for warps, after the drawn op's warp, the identity for tables); color and
  sharpness share one blend of their selected target; cutout is a final select.
  hist: the image's histogram [3, 256] if already counted (for equalize).
  """
  h, w = image.shape[:2]
  a = op_args(magnitude)
  luts = _luts(a, h, w, histogram)
  if hist is not None:
    luts['equalize'] = lambda _: ops.equalize_lut(hist)
  tables = [f(image) for f in luts.values()]
  lut = jnp.stack(tables + [ops.per_channel(ops.VALUES)])[jnp.asarray(_LUT_SLOT)[op]]
  mats = list(_matrices(a, sign, h, w).values()) + [ops.translate_matrix(0.0, 0.0)]
  out = ops.apply_lut(ops.affine(image, jnp.stack(mats)[jnp.asarray(_MAT_SLOT)[op]]), lut)
  is_color = op == OPS.index('color')
  target = jnp.where(is_color, ops.grey(image), ops.smooth(image))
  out = jnp.where(is_color | (op == OPS.index('sharpness')),
                  ops.blend(target, image, a['factor']), out)
  return jnp.where(op == OPS.index('cutout'), ops.cutout(image, a['pad'], center), out)


def randaugment_batch(images: jax.Array, keys: jax.Array, *, num_layers: int,
                      magnitude: float, mode: str | None = None,
                      histogram: str | None = None) -> jax.Array:
  """Per-example RandAugment of uint8 [B, H, W, 3]; example b's layer l uses fold_in(keys[b], l).

  mode ('compact' or 'switch') and histogram (augment_ops.HISTOGRAMS) pick among
  bit-identical implementations (module doc); None: the backend's (mixer_flax/backends.py).
  """
  defaults = backends.current()
  mode = defaults.randaug_mode if mode is None else mode
  histogram = defaults.randaug_histogram if histogram is None else histogram
  if mode not in MODES:
    raise ValueError(f'RandAugment mode {mode!r}: expected one of {MODES}.')
  if histogram not in ops.HISTOGRAMS:
    raise ValueError(f'RandAugment histogram method {histogram!r}: expected one of '
                     f'{ops.HISTOGRAMS}.')
  if num_layers <= 0:
    return images
  h, w = images.shape[1:3]

  def switch_layer(i, xk):  # one example; lax.switch runs only the drawn op
    op, sign, center = draw(jax.random.fold_in(xk[1], i), h, w)
    return apply_op(xk[0], op, sign, center, magnitude=magnitude, histogram=histogram), xk[1]

  def compact_layer(i, x):  # the whole batch; histograms only where equalize was drawn
    op, sign, center = jax.vmap(lambda k: draw(jax.random.fold_in(k, i), h, w))(keys)
    hist = augment_compact.needed_histograms(x, op == OPS.index('equalize'), method=histogram)
    return jax.vmap(lambda *xs: select_op(*xs[:4], magnitude=magnitude, histogram=histogram,
                                          hist=xs[4]))(x, op, sign, center, hist)

  if mode == 'switch':
    return jax.lax.map(lambda xk: jax.lax.fori_loop(0, num_layers, switch_layer, xk)[0],
                       (images, keys))
  return jax.lax.fori_loop(0, num_layers, compact_layer, images)
