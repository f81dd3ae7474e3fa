"""Device RandAugment: the accelerator variants equal the plain ones bit for bit.

Histogram methods against numpy's bincount, the autocontrast range against the histogram
extremes it replaced, and the vmap-friendly select_op ('compact' mode) against the per-op
lax.switch path (apply_op, which tests/test_data_augment.py checks against Pillow) for every op.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax.data import augment, augment_compact
from mixer_flax.data import augment_ops as ops


def _images():
  rs = np.random.RandomState(0)
  out = [rs.randint(0, 256, (24, 20, 3)), np.full((24, 20, 3), 255), np.zeros((24, 20, 3)),
         rs.choice([3, 250], (24, 20, 3)), rs.randint(100, 108, (24, 20, 3))]
  return np.stack(out).astype(np.uint8)


def _bincount(image):
  return np.stack([np.bincount(image[..., c].ravel(), minlength=256) for c in range(3)])


@pytest.mark.parametrize('method', ops.HISTOGRAMS)
def test_histogram_methods_count_exactly(method):
  images = _images()
  got = np.asarray(jax.jit(jax.vmap(lambda x: ops.histogram(x, method)))(images))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, np.stack([_bincount(x) for x in images]))
  big = np.random.RandomState(1).randint(0, 2, (256, 256, 3)).astype(np.uint8) * 255
  big[:3, 0, 0] = 7  # 65,536 pixels, ~32k per bin: beyond bf16's integers, exact in float32
  np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: ops.histogram(x, method))(big)),
                                _bincount(big))


def test_unknown_histogram_method_and_mode_are_reported():
  with pytest.raises(ValueError, match="'onehot'.*expected one of \\('scatter', 'onehot_int8'\\)"):
    ops.histogram(jnp.zeros((4, 4, 3), jnp.uint8), 'onehot')
  images, keys = jnp.zeros((2, 4, 4, 3), jnp.uint8), jax.random.split(jax.random.key(0), 2)
  with pytest.raises(ValueError, match="histogram method 'compare'.*'scatter', 'onehot_int8'"):
    augment.randaugment_batch(images, keys, num_layers=2, magnitude=9, histogram='compare')
  with pytest.raises(ValueError, match="mode 'select'.*'compact', 'switch'"):
    augment.randaugment_batch(images, keys, num_layers=2, magnitude=9, mode='select')


def test_autocontrast_range_is_the_histograms_first_and_last_level():
  for image in _images():
    hist = _bincount(image)
    first = np.argmax(hist > 0, axis=1)
    last = 255 - np.argmax(hist[:, ::-1] > 0, axis=1)
    lo, hi = (np.asarray(v) for v in ops.channel_range(image))
    np.testing.assert_array_equal(lo, first)
    np.testing.assert_array_equal(hi, last)
    lut = np.asarray(ops.autocontrast_lut(lo, hi))
    for c in range(3):  # the reference's scale_channel in float32
      scale = np.float32(255.0) / np.float32(max(last[c] - first[c], 1))
      v = np.arange(256, dtype=np.float32) * scale + (-np.float32(first[c]) * scale)
      want = np.clip(v, 0, 255).astype(np.uint8) if last[c] > first[c] else np.arange(256)
      np.testing.assert_array_equal(lut[c], want)


@pytest.mark.parametrize('histogram', ops.HISTOGRAMS)
def test_select_op_equals_the_switch_path_for_every_op(histogram):
  """Each op forced on a batch (random sign and cutout centre): select_op == apply_op."""
  base = _images()
  n_ops = len(augment.OPS)
  images = np.concatenate([base] * 4)[:, :, :16]  # 20 images of 24 x 16
  rs = np.random.RandomState(3)
  signs = jnp.asarray(rs.choice([-1.0, 1.0], len(images)), jnp.float32)
  centers = jnp.asarray(np.stack([rs.randint(0, 24, len(images)),
                                  rs.randint(0, 16, len(images))], 1))

  def both(op, x, sign, center):
    kw = dict(magnitude=7, histogram=histogram)
    return (augment.select_op(x, op, sign, center, **kw),
            augment.apply_op(x, op, sign, center, **kw))

  run = jax.jit(jax.vmap(both, in_axes=(None, 0, 0, 0)))
  changed = 0
  for op in range(n_ops):
    selected, switched = (np.asarray(v) for v in run(jnp.int32(op), images, signs, centers))
    np.testing.assert_array_equal(selected, switched, err_msg=augment.OPS[op])
    changed += not np.array_equal(selected, images)
  assert changed == n_ops


def test_needed_histograms_counts_a_group_or_every_image():
  images = _images()
  want = np.stack([_bincount(x) for x in images])
  run = jax.jit(lambda x, n: augment_compact.needed_histograms(x, n, method='scatter', size=2))
  for needed in ([0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [1, 0, 0, 0, 1], [1, 1, 0, 1, 0],
                 [1, 1, 1, 1, 1]):  # 0 and 1-2 needed: the group of 2; 3 and 5: every image
    needed = np.array(needed, bool)
    got = np.asarray(run(images, needed))
    np.testing.assert_array_equal(got[needed], want[needed])
    assert not got[~needed].any()
  assert augment_compact.capacity(512) == 67 and augment_compact.capacity(4) == 4
