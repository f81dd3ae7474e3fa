"""uint8 image primitives of the reference RandAugment ops, in JAX (formulas: augment.py).

Every function takes one uint8 image [H, W, 3] (or its histogram) and is jit/vmap
friendly. Point-wise ops are 256-entry lookup tables per channel ([3, 256] uint8,
`apply_lut`); geometric ops are [2, 3] matrices mapping an output pixel (u = column,
v = row, 1) to its source pixel (`affine`). `trunc` = clip to [0, 255], then cast to
uint8 (truncation), as the reference's `tf.cast` after `tf.clip_by_value`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

FILL = 128  # the reference's replace value for pixels uncovered by a warp, and for cutout
# numpy, not jnp: importing this module (config.validate does) must not start the JAX backend
# (jax.distributed.initialize has to come first).
VALUES = np.arange(256, dtype=np.int32)


def trunc_uint8(x: jax.Array) -> jax.Array:
  """clip(x, 0, 255) cast to uint8 (truncation toward zero)."""
  return jnp.clip(x, 0.0, 255.0).astype(jnp.uint8)


def blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array | float) -> jax.Array:
  """trunc(d + factor * (x - d)) in float32: PIL's Image.blend / ImageEnhance."""
  d = jnp.asarray(degenerate).astype(jnp.float32)
  return trunc_uint8(d + jnp.float32(factor) * (jnp.asarray(image).astype(jnp.float32) - d))


# ---------------------------------------------------------------------------
# Lookup tables.

HISTOGRAMS = ('scatter', 'onehot_int8')  # the backends' defaults (mixer_flax/backends.py)


def histogram(image: jax.Array, method: str = 'scatter') -> jax.Array:
  """Per channel counts of each level: uint8 [H, W, 3] -> int32 [3, 256]; both methods exact.

  'scatter' adds 1 per pixel into the bins (on a GPU: atomics into 768 addresses);
  'onehot_int8' counts[c, 16 hi + lo] = onehot16(x >> 4)^T @ onehot16(x & 15), one
  [16, P] x [P, 16] product per channel with 0/1 int8 operands and int32 accumulation.
  """
  x = jnp.asarray(image).reshape(-1, 3)
  if method == 'scatter':
    flat = x.astype(jnp.int32) + 256 * jnp.arange(3)
    return jnp.zeros(3 * 256, jnp.int32).at[flat.reshape(-1)].add(1).reshape(3, 256)
  if method == 'onehot_int8':
    nibble = jnp.arange(16, dtype=jnp.uint8)[None, :, None]
    hi = ((x.T[:, None, :] >> 4) == nibble).astype(jnp.int8)  # [3, 16, P]
    lo = ((x.T[:, None, :] & 15) == nibble).astype(jnp.int8)
    counts = jnp.einsum('chp,clp->chl', hi, lo, preferred_element_type=jnp.int32,
                        precision=jax.lax.Precision.HIGHEST)
    return counts.reshape(3, 256)
  raise ValueError(f'histogram method {method!r}: expected one of {HISTOGRAMS}.')


def channel_range(image: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per channel (min, max) levels of uint8 [H, W, 3]: two int32 [3] (autocontrast's input)."""
  x = jnp.asarray(image).reshape(-1, 3)
  return jnp.min(x, axis=0).astype(jnp.int32), jnp.max(x, axis=0).astype(jnp.int32)


def apply_lut(image: jax.Array, lut: jax.Array) -> jax.Array:
  """out[..., c] = lut[c, image[..., c]] for a uint8 lut [3, 256]."""
  index = jnp.asarray(image).astype(jnp.int32) + 256 * jnp.arange(3)
  return lut.reshape(-1)[index]


def per_channel(values: jax.Array) -> jax.Array:
  """One table [256] for all three channels: [3, 256] uint8."""
  return jnp.broadcast_to(values.astype(jnp.uint8), (3, 256))


def _last_nonzero(hist: jax.Array) -> jax.Array:
  return 255 - jnp.argmax(hist[:, ::-1] > 0, axis=1)


def autocontrast_lut(lo: jax.Array, hi: jax.Array) -> jax.Array:
  """Per channel: trunc(v * s - lo * s), s = 255 / (hi - lo) (float32); identity if hi == lo.

  lo, hi: per channel min and max levels [3] (channel_range).
  """
  lo = jnp.asarray(lo).astype(jnp.float32)[:, None]
  hi = jnp.asarray(hi).astype(jnp.float32)[:, None]
  scale = 255.0 / jnp.maximum(hi - lo, 1.0)
  stretched = trunc_uint8(VALUES.astype(jnp.float32) * scale + (-lo * scale))
  return jnp.where(hi > lo, stretched, per_channel(VALUES))


def equalize_lut(hist: jax.Array) -> jax.Array:
  """PIL's equalize: lut[v] = (#pixels < v + step // 2) // step; identity if step == 0."""
  last = jnp.take_along_axis(hist, _last_nonzero(hist)[:, None], axis=1)
  step = (jnp.sum(hist, axis=1, keepdims=True) - last) // 255
  below = jnp.cumsum(hist, axis=1) - hist
  lut = jnp.clip((below + step // 2) // jnp.maximum(step, 1), 0, 255)
  return jnp.where(step > 0, lut, VALUES).astype(jnp.uint8)


def invert_lut() -> jax.Array:
  """255 - v."""
  return per_channel(255 - VALUES)


def posterize_lut(bits: int) -> jax.Array:
  """(v >> s) << s with s = 8 - bits, shifted as the reference's uint8 `tf.bitwise` shifts do.

  TF turns the Python int s into a uint8 constant (wrapping modulo 256) and its CPU kernels
  (tf.data runs there) clamp a shift to [0, 7]: bits 0 (m <= 2) keeps the top bit instead of
  giving black, and bits > 8 (m >= 23; s < 0 wraps to >= 248) keeps one bit too.
  """
  shift = min((8 - int(bits)) % 256, 7)
  return per_channel((VALUES >> shift) << shift)


def solarize_lut(threshold: int) -> jax.Array:
  """Inverts levels at or above the threshold wrapped to uint8: v if v < t % 256 else 255 - v.

  The reference compares the uint8 image with the Python int int(25.6 m), which TF turns into
  a uint8 constant modulo 256: m = 10, 20, 30 give 0 (every level inverted), m = 12 gives 51,
  m = 15 gives 128 (the paper's B/16 setting), not "no change" for m >= 10.
  """
  return per_channel(np.where(VALUES < int(threshold) % 256, VALUES, 255 - VALUES))


def solarize_add_lut(addition: int, threshold: int = 128) -> jax.Array:
  """min(v + addition, 255) (clipped) if v < threshold else v."""
  return per_channel(jnp.where(VALUES < threshold, jnp.clip(VALUES + addition, 0, 255), VALUES))


def blend_lut(degenerate: int, factor: float) -> jax.Array:
  """blend(degenerate, v, factor) for a constant degenerate level (contrast, brightness)."""
  return per_channel(blend(jnp.full((256,), degenerate), VALUES, factor))


def contrast_degenerate(height: int, width: int) -> int:
  """The reference's contrast target: its 'mean' is sum(histogram) / 256 = H W / 256."""
  return int(min(height * width / 256.0, 255.0))


# ---------------------------------------------------------------------------
# Nearest-neighbour affine warps.

def rotate_matrix(degrees: jax.Array | float, height: int, width: int) -> jax.Array:
  """tfa.image.rotate: rotation by `degrees` about ((W - 1) / 2, (H - 1) / 2)."""
  radians = jnp.float32(degrees) * jnp.float32(math.pi / 180.0)
  cos, sin = jnp.cos(radians), jnp.sin(radians)
  w, h = jnp.float32(width - 1), jnp.float32(height - 1)
  x_off = (w - (cos * w - sin * h)) / 2.0
  y_off = (h - (sin * w + cos * h)) / 2.0
  return jnp.stack([jnp.stack([cos, -sin, x_off]), jnp.stack([sin, cos, y_off])])


def _eye23() -> jax.Array:
  return jnp.eye(2, 3, dtype=jnp.float32)


def shear_x_matrix(level: jax.Array | float) -> jax.Array:
  """Output (u, v) <- input (u + level v, v)."""
  return _eye23().at[0, 1].set(level)


def shear_y_matrix(level: jax.Array | float) -> jax.Array:
  """Output (u, v) <- input (u, v + level u)."""
  return _eye23().at[1, 0].set(level)


def translate_matrix(pixels_x: jax.Array | float, pixels_y: jax.Array | float) -> jax.Array:
  """Output (u, v) <- input (u + pixels_x, v + pixels_y)."""
  return _eye23().at[:, 2].set(jnp.stack([jnp.float32(pixels_x), jnp.float32(pixels_y)]))


def _round_half_away(x: jax.Array) -> jax.Array:
  return jnp.where(x >= 0, jnp.floor(x + 0.5), jnp.ceil(x - 0.5))


def affine(image: jax.Array, matrix: jax.Array, fill: int = FILL) -> jax.Array:
  """Nearest-neighbour warp of uint8 [H, W, 3]: out[v, u] = image[round(M (u, v, 1))].

  Rounding is half away from zero (TF's NEAREST); sources outside the image take `fill`.
  """
  image = jnp.asarray(image)
  h, w = image.shape[:2]
  v, u = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                      indexing='ij')
  m = matrix.astype(jnp.float32)
  src_u = _round_half_away(m[0, 0] * u + m[0, 1] * v + m[0, 2])
  src_v = _round_half_away(m[1, 0] * u + m[1, 1] * v + m[1, 2])
  inside = (src_u >= 0) & (src_u <= w - 1) & (src_v >= 0) & (src_v <= h - 1)
  index = (jnp.clip(src_v, 0, h - 1) * w + jnp.clip(src_u, 0, w - 1)).astype(jnp.int32)
  return jnp.where(inside[..., None], image.reshape(-1, 3)[index], jnp.uint8(fill))


# ---------------------------------------------------------------------------
# Per-pixel degenerate images and cutout.

def grey(image: jax.Array) -> jax.Array:
  """tf.image.rgb_to_grayscale of uint8: trunc(255.5 (0.2989 r + 0.587 g + 0.114 b) / 255)."""
  x = jnp.asarray(image).astype(jnp.float32) * jnp.float32(1.0 / 255.0)
  g = x[..., 0] * 0.2989 + x[..., 1] * 0.5870 + x[..., 2] * 0.1140
  return trunc_uint8(g * 255.5)[..., None]


def smooth(image: jax.Array) -> jax.Array:
  """The sharpness target: floor((3x3 sum + 4 centre) / 13) inside, the original border.

  PIL's SMOOTH kernel [1 1 1; 1 5 1; 1 1 1] / 13 with the reference's truncation,
  computed exactly in integers (a separable box sum). Deliberately not the reference's
  float32 kernel / 13: its sum lands one ulp below k where the weighted sum is 13 k, so it
  truncates to k - 1 there, and its sharpness differs from ours by |1 - factor| levels at those
  pixels (tests/test_data_augment_reference.py).
  """
  image = jnp.asarray(image)
  x = image.astype(jnp.int32)
  rows = x[:-2] + x[1:-1] + x[2:]
  box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
  inner = (box + 4 * x[1:-1, 1:-1]) // 13
  return image.at[1:-1, 1:-1].set(inner.astype(jnp.uint8))


def cutout(image: jax.Array, pad: int, center: jax.Array) -> jax.Array:
  """Rows [cy - pad, cy + pad) x columns [cx - pad, cx + pad), clipped, set to FILL."""
  image = jnp.asarray(image)
  h, w = image.shape[:2]
  rows = (jnp.arange(h) >= center[0] - pad) & (jnp.arange(h) < center[0] + pad)
  cols = (jnp.arange(w) >= center[1] - pad) & (jnp.arange(w) < center[1] + pad)
  return jnp.where((rows[:, None] & cols[None, :])[..., None], jnp.uint8(FILL), image)
