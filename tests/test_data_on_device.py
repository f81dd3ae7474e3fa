"""Device-side batch preparation: mixup, labels, scaling, layout-independent randomness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mixer_flax.data import on_device

PAPER = on_device.AugmentSpec(num_classes=10, randaug_layers=2, randaug_magnitude=15,
                              mixup_alpha=0.5)


def uint8_batch(n=16, size=16, seed=0):
  rs = np.random.RandomState(seed)
  return {'images': rs.randint(0, 256, (n, size, size, 3)).astype(np.uint8),
          'labels': rs.randint(0, 10, n).astype(np.int32)}


def test_scale_maps_uint8_to_unit_interval():
  out = on_device.scale_images(jnp.array([0, 127, 128, 255], jnp.uint8))
  np.testing.assert_allclose(out, [-1.0, -0.5 / 127.5, 0.5 / 127.5, 1.0], rtol=1e-6)


def test_labels_one_hot_and_multi_hot():
  np.testing.assert_array_equal(on_device.encode_labels(jnp.array([2, 0]), 4, (2,)),
                                [[0, 0, 1, 0], [1, 0, 0, 0]])
  multi = jnp.array([[0, 1, 0, 1], [0, 0, 0, 0]], jnp.uint8)
  np.testing.assert_array_equal(on_device.encode_labels(multi, 4, (2,)), multi)
  with pytest.raises(ValueError, match='expected class indices'):
    on_device.encode_labels(jnp.zeros((2, 3)), 4, (2,))


def test_mixup_is_a_convex_combination_of_pairs_2k_2k1():
  batch = uint8_batch()
  spec = PAPER._replace(randaug_layers=0)
  images, labels = on_device.train_inputs(batch, spec=spec, rng=jax.random.key(0),
                                          step=jnp.int32(3), first_index=0)
  x = (batch['images'].astype(np.float32) - 127.5) / 127.5
  y = np.eye(10, dtype=np.float32)[batch['labels']]
  np.testing.assert_allclose(np.asarray(labels).sum(-1), 1.0, rtol=1e-6)
  lam = float(np.asarray(labels)[0, batch['labels'][0]])
  if batch['labels'][0] == batch['labels'][1]:
    lam = 1.0
  assert 0.5 <= lam <= 1.0
  partner = x.reshape(8, 2, 16, 16, 3)[:, ::-1].reshape(x.shape)
  np.testing.assert_allclose(images, lam * x + (1 - lam) * partner, atol=1e-5)
  y_partner = y.reshape(8, 2, 10)[:, ::-1].reshape(y.shape)
  np.testing.assert_allclose(labels, lam * y + (1 - lam) * y_partner, atol=1e-6)
  assert np.abs(np.asarray(images)).max() <= 1.0


def test_mixup_ratio_is_the_folded_beta():
  """lambda = max(a, 1 - a) with a ~ Beta(alpha, alpha): KS test against its CDF."""
  alpha = 0.5
  keys = jax.random.split(jax.random.key(7), 3000)
  lam = np.asarray(jax.vmap(lambda k: on_device.mixup_ratio(k, alpha))(keys), np.float64)
  assert lam.min() >= 0.5 and lam.max() <= 1.0
  folded_cdf = lambda x: 2 * stats.beta.cdf(x, alpha, alpha) - 1  # noqa: E731
  assert stats.kstest(lam, folded_cdf).pvalue > 1e-3
  assert stats.kstest(lam, lambda x: 2 * stats.beta.cdf(x, 2.0, 2.0) - 1).pvalue < 1e-6


@pytest.mark.parametrize('spec, devices', [(PAPER._replace(mixup_alpha=0.0), 8), (PAPER, 4)])
def test_randomness_depends_on_step_and_global_index_not_on_device_split(spec, devices):
  batch = uint8_batch()
  prepare = jax.jit(lambda b, s, first: on_device.train_inputs(
      b, spec=spec, rng=jax.random.key(5), step=s, first_index=first))
  whole = prepare(batch, jnp.int32(4), 0)
  n = 16 // devices
  parts = [prepare({k: v[d * n:(d + 1) * n] for k, v in batch.items()}, jnp.int32(4), d * n)
           for d in range(devices)]
  for i in range(2):  # RandAugment is bit-exact; mixing in float may differ by one ulp
    np.testing.assert_allclose(np.concatenate([p[i] for p in parts]), whole[i], rtol=0,
                               atol=0 if spec.mixup_alpha == 0 else 1e-6)
  np.testing.assert_array_equal(prepare(batch, jnp.int32(4), 0)[0], whole[0])
  assert not np.array_equal(prepare(batch, jnp.int32(5), 0)[0], whole[0])


def test_odd_per_device_batch_with_mixup_is_refused():
  batch = uint8_batch(n=3)
  with pytest.raises(ValueError, match='must be even'):
    on_device.train_inputs(batch, spec=PAPER._replace(randaug_layers=0),
                           rng=jax.random.key(0), step=jnp.int32(0), first_index=0)
