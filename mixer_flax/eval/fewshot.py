"""Few-shot linear evaluation on frozen pre-logits (paper section 3).

A closed-form L2-regularised least-squares classifier maps frozen pre-logits
(after the final LayerNorm and mean pooling) to {-1, +1}^K targets; accuracy is
that of the argmax on the test split. As in the later official evaluator,
features are whitened with the mean/std of the k-shot training subset, a
constant bias feature (100) is appended, and `l2 = 2^10`. The solve runs in
float64 numpy; feature extraction is a jitted forward pass sharded over all
local devices.

Stand-alone: `scripts/fewshot.py`; in training: a `config.evals` entry of type 'fewshot'.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from mixer_flax import devices
from mixer_flax.data import on_device
from mixer_flax.eval import inputs

BIAS_FEATURE = 100.0
DEFAULT_L2 = 2.0**10
DEFAULT_SHOTS = (1, 5, 10, 25)
# Square resize to 8/7 of the side, then the central crop: big_vision's few-shot evaluator
# (`resize(256)|central_crop(224)`).
EVAL_MODE = 'resize_crop'
# tfds name -> (train split the shots are drawn from, test split).
DEFAULT_SPLITS = {
    'imagenet2012': ('train[:10%]', 'validation'),
    'cifar10': ('train', 'test'),
    'cifar100': ('train', 'test'),
    'oxford_iiit_pet': ('train', 'test'),
    'oxford_flowers102': ('train', 'test'),
    'sklearn_digits': ('train', 'test'),
}


def whiten_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and std `(D,)` of `features (N, D)`; zero std is replaced by 1."""
  mean = features.mean(axis=0)
  std = features.std(axis=0)
  return mean, np.where(std > 0, std, 1.0)


def _design(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  x = (np.asarray(features, np.float64) - mean) / std
  return np.concatenate([x, np.full((x.shape[0], 1), BIAS_FEATURE)], axis=1)


def fit_linear(features: np.ndarray, labels: np.ndarray, *, num_classes: int,
               l2: float = DEFAULT_L2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Closed-form ridge regression to {-1, +1} targets.

  Solves `W = (X^T X + l2 I)^-1 X^T Y` in float64, where X is the whitened
  features with a constant bias column and `Y = 2 onehot(labels) - 1`.

  Args:
    features: `(N, D)` training features.
    labels: `(N,)` int class ids in [0, num_classes).
    num_classes: K.
    l2: ridge strength (applied to all D+1 weights, as in the official evaluator).

  Returns:
    `(W (D+1, K), mean (D,), std (D,))`.
  """
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  if features.ndim != 2 or labels.shape != features.shape[:1]:
    raise ValueError(f'fit_linear needs features (N, D) and labels (N,); got {features.shape} '
                     f'and {labels.shape}.')
  mean, std = whiten_stats(features)
  x = _design(features, mean, std)
  y = 2.0 * np.eye(num_classes)[labels] - 1.0
  w = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ y)
  return w, mean, std


def predict_linear(features: np.ndarray, w: np.ndarray, mean: np.ndarray,
                   std: np.ndarray) -> np.ndarray:
  """Class ids `(N,)` of `features (N, D)` under a `fit_linear` solution."""
  return np.argmax(_design(features, mean, std) @ w, axis=1)


def sample_shots(labels: np.ndarray, *, shots: int, seed: int) -> np.ndarray:
  """Indices of `shots` examples per class (fewer if a class has fewer), sorted."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    picked.append(rng.choice(idx, size=min(shots, idx.size), replace=False))
  return np.sort(np.concatenate(picked))


def fewshot_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *,
                     shots: int, seeds: Sequence[int], l2: float = DEFAULT_L2,
                     num_classes: int | None = None) -> float:
  """Mean over seeds of the k-shot linear probe's test accuracy.

  Args:
    train: `(features (N, D), labels (N,))` the shots are drawn from.
    test: `(features (M, D), labels (M,))`.
    shots: examples per class.
    seeds: one k-shot draw per seed.
    l2: ridge strength.
    num_classes: K (default: 1 + the largest label seen).

  Returns:
    accuracy in [0, 1].
  """
  num_classes = num_classes or int(max(train[1].max(), test[1].max())) + 1
  accs = []
  for seed in seeds:
    idx = sample_shots(train[1], shots=shots, seed=seed)
    w, mean, std = fit_linear(train[0][idx], train[1][idx], num_classes=num_classes, l2=l2)
    accs.append(float(np.mean(predict_linear(test[0], w, mean, std) == test[1])))
  return float(np.mean(accs))


def extract_features(model: Any, params: Any,
                     batches: Iterable[dict]) -> tuple[np.ndarray, np.ndarray]:
  """Pre-logits of every unmasked example of `batches`.

  Args:
    model: an `MlpMixer`.
    params: unreplicated parameters.
    batches: dicts with 'images' `(..., H, W, 3)` (uint8, or float in [-1, 1]), 'labels'
      (one-hot `(..., K)` or int `(...)`), optionally 'mask' `(...)`; leading axes flattened.

  Returns:
    `(features (N, C) float32, labels (N,) int)`.
  """
  local = jax.local_devices()
  data_sharding = devices.batch_sharding(local)
  params = jax.device_put(params, devices.replicated_sharding(local))
  scaled = on_device.scale_images  # uint8 pipeline images -> [-1, 1] on the device
  fwd = jax.jit(lambda p, x: model.apply({'params': p}, scaled(x), return_prelogits=True)[1])
  feats, labels = [], []
  for batch in batches:
    images = np.asarray(batch['images'])
    images = images.reshape((-1,) + images.shape[-3:])
    lab = np.asarray(batch['labels'])
    lab = lab.reshape((images.shape[0], -1)).argmax(-1) if lab.size != images.shape[0] \
        else lab.reshape(-1)
    mask = np.asarray(batch.get('mask', np.ones(images.shape[0]))).reshape(-1) > 0
    pad = -images.shape[0] % len(local)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    out = np.asarray(fwd(params, jax.device_put(images, data_sharding)))[:mask.size]
    feats.append(out[mask])
    labels.append(lab[mask])
  return np.concatenate(feats), np.concatenate(labels).astype(np.int64)


def parse_dataset(spec: str) -> tuple[str, str, str]:
  """'cifar10' or 'cifar10:train[:5000]:test' -> (tfds name, train split, test split)."""
  parts, depth, start = [], 0, 0
  for i, ch in enumerate(spec):  # ':' inside split slices ('train[:10%]') does not separate
    depth += {'[': 1, ']': -1}.get(ch, 0)
    if ch == ':' and depth == 0:
      parts.append(spec[start:i])
      start = i + 1
  parts.append(spec[start:])
  if len(parts) == 3:
    return parts[0], parts[1], parts[2]
  if len(parts) == 1 and spec in DEFAULT_SPLITS:
    return (spec,) + DEFAULT_SPLITS[spec]
  raise ValueError(f'few-shot datasets entry {spec!r}: give "tfds_name:train_split:'
                   f'test_split" (default splits are known for {sorted(DEFAULT_SPLITS)}).')


class FewShotEvaluator:
  """Linear few-shot accuracy of a model's pre-logits on `datasets` (the 'fewshot' evaluator)."""

  # config.evals options: the later official evaluator's settings (DEFAULT_SPLITS: the splits of
  # a dataset given by name alone).
  OPTIONS = dict(
      datasets=('cifar10',),  # tfds names, or 'name:train_split:test_split'
      shots=DEFAULT_SHOTS,  # examples per class of each probe
      seeds=(0, 1, 2),  # one draw of the shots per seed; accuracies averaged
      l2=DEFAULT_L2,  # ridge strength of the closed-form linear probe
      image_size=224,  # input side of the probe's images
      pp=None,  # config.pp keys for the probe's images (eval_mode, eval_resize)
      batch=256,  # images per feature-extraction batch
      data_dir=None,  # tfds data_dir (None: config.data_dir)
  )

  def __init__(self, *, config: ml_collections.ConfigDict, model: Any, name: str = 'fewshot',
               options: ml_collections.ConfigDict | dict | None = None):
    """Builds the evaluator.

    Args:
      config: the run config (its `data_dir` and `pp` are the fallbacks).
      model: the `MlpMixer` whose pre-logits are probed (any head).
      name: prefix of the metric names.
      options: the `config.evals` entry: `every` and `OPTIONS`.
    """
    options = {**self.OPTIONS, **dict(options or {})}
    self.config, self.model, self.name = config, model, name
    self.options = options
    self.every = int(options.get('every') or 1)
    self.datasets = [parse_dataset(s) for s in options['datasets']]

  def data(self) -> list[tuple[str, str]]:
    """The (dataset, split) pairs this evaluator reads."""
    return [(name, split) for name, train, test in self.datasets for split in (train, test)]

  def features(self, params: Any, tfds_name: str,
               split: str) -> tuple[np.ndarray, np.ndarray]:
    """Pre-logits `(N, C)` and labels `(N,)` of one split, eval preprocessing."""
    from mixer_flax.data import pipeline  # TensorFlow only when data is needed.
    o = self.options
    n = jax.local_device_count()
    pp = {'eval_mode': EVAL_MODE, **dict(o['pp'] or {})}
    cfg = inputs.eval_config(self.config, dataset=tfds_name, image_size=o['image_size'],
                             batch=-(-int(o['batch']) // n) * n, data_dir=o['data_dir'], pp=pp)
    cfg.num_classes, cfg.prefetch = None, 0
    return extract_features(self.model, params, pipeline.get_eval_iterator(cfg, split=split))

  def run(self, params: Any) -> dict[str, float]:
    """Returns `{'<name>/<dataset>_<k>shot': accuracy}` (mean over seeds)."""
    size = self.options['image_size']
    ref = jax.eval_shape(lambda: self.model.init(
        jax.random.PRNGKey(0), np.zeros((1, size, size, 3), np.float32)))['params']
    if devices.is_replicated(params, ref):
      params = jax.tree_util.tree_map(lambda x: x[0], params)
    results = {}
    for name, train_split, test_split in self.datasets:
      train = self.features(params, name, train_split)
      test = self.features(params, name, test_split)
      for shots in self.options['shots']:
        acc = fewshot_accuracy(train, test, shots=shots, seeds=self.options['seeds'],
                               l2=self.options['l2'])
        results[f'{self.name}/{name}_{shots}shot'] = acc
        logging.info('few-shot %s %d-shot: %.4f', name, shots, acc)
    return results
