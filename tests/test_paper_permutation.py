"""Section 3.4: a fixed patch + pixel permutation is exactly undone by permuted Mixer weights."""

import jax
import numpy as np
import pytest

from mixer_flax import config as config_lib
from mixer_flax import models
from mixer_flax.paper import permutation, permutation_experiment


@pytest.fixture(scope='module')
def model_and_params():
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 3))))
  rng = np.random.default_rng(1)

  def draw(path, s):  # non-trivial weights everywhere (numpy: no per-leaf compilation)
    name = path[-1].key
    fan_in = int(np.prod(s.shape[:-1])) if name == 'kernel' else 1
    w = rng.normal(size=s.shape) / np.sqrt(fan_in) * (1.0 if name == 'kernel' else 0.2)
    return (w + (name == 'scale')).astype(np.float32)

  return model, jax.tree_util.tree_map_with_path(draw, shapes['params'])


def _images(n=6, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


def test_patch_pixel_permutation_is_equivalent_to_permuted_weights(model_and_params):
  model, params = model_and_params
  perm = permutation.make_permutation('patch_pixel', image_size=16, patch_size=4, seed=3)
  assert not np.array_equal(perm.token_perm, np.arange(16))
  assert not np.array_equal(perm.pixel_perm, np.arange(16))
  x = _images()
  xp = permutation.apply(perm, x)
  assert not np.allclose(xp, x)
  np.testing.assert_array_equal(np.sort(xp.reshape(6, -1, 3), axis=1),
                                np.sort(x.reshape(6, -1, 3), axis=1))  # a pure rearrangement
  logits = np.asarray(model.apply({'params': params}, x))
  same = np.asarray(model.apply({'params': permutation.permute_params(perm, params)}, xp))
  np.testing.assert_allclose(same, logits, rtol=1e-5, atol=1e-5)
  # Without permuting the weights the function differs: the check is not vacuous.
  plain = np.asarray(model.apply({'params': params}, xp))
  assert np.abs(plain - logits).max() > 1e-2


def test_global_pixel_permutation_has_no_weight_equivalent(model_and_params):
  _, params = model_and_params
  perm = permutation.make_permutation('global_pixel', image_size=16, patch_size=4, seed=0)
  assert sorted(perm.pixel_perm) == list(range(256))
  with pytest.raises(ValueError, match='no equivalent'):
    permutation.permute_params(perm, params)


def test_digits_folder_feeds_the_trainer_exactly_the_permuted_pixels(tmp_path):
  """The image folder + config of the experiment give the model apply(perm, upscaled digits)."""
  from sklearn.datasets import load_digits

  from mixer_flax.data import pipeline
  from mixer_flax.data.datasets.sklearn_digits import digits_split

  base = config_lib.base_config()
  base.update(dict(model_name='Mixer-Ti_4', image_size=16, dataset='sklearn_digits',
                   train_split='train', eval_split='test', batch=8, batch_eval=360,
                   total_steps=10, checkpoint_every=5, prefetch=0, shuffle_buffer=10))
  base.pp.update(eval_resize=18)
  config = permutation_experiment.experiment_config(base, kind='patch_pixel',
                                                    data_root=str(tmp_path))
  assert config.pp.crop == 'resize' and not config.pp.flip and config.evals.eval.every == 10
  batches = list(pipeline.get_eval_iterator(config))
  images = np.concatenate([np.asarray(b['images']).reshape(-1, 16, 16, 3) for b in batches])
  labels = np.concatenate([np.asarray(b['labels']).reshape(-1) for b in batches])
  mask = np.concatenate([np.asarray(b['mask']).reshape(-1) for b in batches]) > 0
  images, labels = images[mask], labels[mask]
  assert len(images) == 360

  digits = load_digits()
  idx = digits_split()['test']
  raw = np.round(digits.images[idx] * 255 / 16).astype(np.uint8).repeat(2, 1).repeat(2, 2)
  perm = permutation.make_permutation('patch_pixel', image_size=16, patch_size=4, seed=0)
  want = permutation.apply(perm, np.repeat(raw[..., None], 3, axis=-1))
  # Match examples regardless of the folder's order.
  order_got = np.lexsort(images.reshape(360, -1).T)
  order_want = np.lexsort(want.reshape(360, -1).T)
  np.testing.assert_array_equal(images[order_got], want[order_want])  # uint8 host pixels
  np.testing.assert_array_equal(labels[order_got], digits.target[idx][order_want])
