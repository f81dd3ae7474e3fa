"""Few-shot linear probe: closed-form solver, shots curve on digits, the evaluator end to end."""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from mixer_flax import config as config_lib
from mixer_flax import devices, models
from mixer_flax.eval import fewshot


def test_solver_matches_ridge_lstsq():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 12)) * rng.uniform(0.5, 3, 12) + rng.normal(size=12)
  y = rng.integers(0, 4, 40)
  l2 = 2.0**10
  w, mean, std = fit_linear(x, y, l2=l2)
  # Independent ridge solution: least squares on the augmented system [X; sqrt(l2) I].
  z = np.concatenate([(x - x.mean(0)) / x.std(0), np.full((40, 1), 100.0)], axis=1)
  t = 2.0 * np.eye(4)[y] - 1.0
  a = np.concatenate([z, np.sqrt(l2) * np.eye(13)])
  b = np.concatenate([t, np.zeros((13, 4))])
  w_ref = np.linalg.lstsq(a, b, rcond=None)[0]
  np.testing.assert_allclose(w, w_ref, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(mean, x.mean(0)) and np.testing.assert_allclose(std, x.std(0))
  np.testing.assert_array_equal(fewshot.predict_linear(x, w, mean, std), (z @ w_ref).argmax(1))
  # With a tiny l2 it interpolates the +-1 targets of a small training set.
  w0, m0, s0 = fit_linear(x[:10], y[:10], l2=1e-8)
  assert np.all(fewshot.predict_linear(x[:10], w0, m0, s0) == y[:10])


def fit_linear(x, y, *, l2):
  return fewshot.fit_linear(x, y, num_classes=4, l2=l2)


def test_sample_shots_is_balanced_and_seeded():
  labels = np.repeat(np.arange(5), 30)
  idx = fewshot.sample_shots(labels, shots=7, seed=3)
  assert np.bincount(labels[idx]).tolist() == [7] * 5
  assert np.array_equal(idx, fewshot.sample_shots(labels, shots=7, seed=3))
  assert not np.array_equal(idx, fewshot.sample_shots(labels, shots=7, seed=4))


def test_pixels_accuracy_rises_with_shots():
  x, y = load_digits(return_X_y=True)
  train, test = (x[:1400], y[:1400]), (x[1400:], y[1400:])
  accs = [fewshot.fewshot_accuracy(train, test, shots=k, seeds=(0, 1, 2)) for k in (1, 5, 25)]
  assert accs[0] < accs[1] < accs[2]
  assert accs[0] > 0.3 and accs[2] > 0.8  # chance is 0.1


def test_is_replicated_compares_with_the_reference_shapes():
  ref = {'w': jax.ShapeDtypeStruct((3, 2), np.float32)}
  assert not devices.is_replicated({'w': np.ones((3, 2))}, ref)
  assert devices.is_replicated({'w': np.ones((8, 3, 2))}, ref)


def test_evaluator_on_digits_mixer_features(data_dir):
  """FewShotEvaluator end to end (tfds sklearn_digits, eval pipeline, random-init Mixer-Ti_4)."""
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 3), np.float32))
  config = config_lib.base_config()
  config.update(model_name='Mixer-Ti_4', dataset='sklearn_digits', data_dir=data_dir,
                image_size=16)
  options = dict(datasets=('sklearn_digits',), shots=(1, 5, 25), seeds=(0, 1), image_size=16,
                 batch=256, pp=dict(eval_mode='resize', eval_resize=16))
  results = fewshot.FewShotEvaluator(config=config, model=model,
                                     options=options).run(params['params'])
  assert sorted(results) == [f'fewshot/sklearn_digits_{k}shot' for k in (1, 25, 5)]
  accs = [results[f'fewshot/sklearn_digits_{k}shot'] for k in (1, 5, 25)]
  assert accs[0] < accs[1] < accs[2]
  assert accs[2] > 0.6  # frozen random features, 25 shots; chance is 0.1


def test_bad_dataset_spec():
  with pytest.raises(ValueError, match='tfds_name:train_split:test_split'):
    fewshot.parse_dataset('my_dataset')
  assert fewshot.parse_dataset('cifar10:train[:5000]:test') == ('cifar10', 'train[:5000]', 'test')
  assert fewshot.parse_dataset('imagenet2012:train[10:20%]:validation[:1000]') == (
      'imagenet2012', 'train[10:20%]', 'validation[:1000]')
  assert fewshot.parse_dataset('cifar10') == ('cifar10', 'train', 'test')
