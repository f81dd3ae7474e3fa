"""Exact top-1/top-5 and loss on a whole split: the 'classification' evaluator.

The trainer's periodic evaluation and the library behind `scripts/evaluate.py`. It reuses the
trainer's pieces: `data.pipeline.get_eval_iterator` (every example exactly once, padded and
masked) and `training.step.make_eval_step` (pmapped, psum'd sums). `imagenet2012_real` labels
are multi-hot ReaL sets; examples whose set is empty are not scored, as in the ReaL paper.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mixer_flax import devices
from mixer_flax.eval import inputs

# Datasets whose label sets may be empty for some examples (excluded from scoring).
MULTI_LABEL_DATASETS = ('imagenet2012_real',)


def eval_sums(eval_step: Any, params: Any, config: ml_collections.ConfigDict, *,
              progress: bool = False) -> dict[str, float]:
  """Runs `eval_step` over the whole eval split and returns the summed metrics.

  The one eval loop of the project. Sums stay on the devices until the end: one host
  sync per pass.

  Args:
    eval_step: from `training.step.make_eval_step`.
    params: parameters replicated over the local devices.
    config: trainer-style config (`dataset`, `eval_split`, `batch_eval`, `pp`, ...).
    progress: show a tqdm progress bar (batches).

  Returns:
    dict(correct, correct_top5, loss, count) summed over every scored example;
    for `MULTI_LABEL_DATASETS` examples without any label are not scored.
  """
  import tqdm  # pylint: disable=g-import-not-at-top

  from mixer_flax.data import pipeline  # pylint: disable=g-import-not-at-top  # TensorFlow

  multi_label = config.dataset in MULTI_LABEL_DATASETS
  total = None
  if progress:  # ceil(examples / global batch) batches (every process yields as many)
    total = -(-pipeline.get_dataset_info(config).num_eval_examples // config.batch_eval)
  totals = None
  for batch in tqdm.tqdm(pipeline.get_eval_iterator(config),
                         desc=f'{config.dataset}[{config.eval_split}]', unit='batch',
                         total=total, disable=not progress):
    if multi_label:  # ReaL: examples without any real label do not count.
      batch = dict(batch)
      batch['mask'] = np.asarray(batch['mask']) * (np.asarray(batch['labels']).sum(-1) > 0)
    sums = eval_step(params, batch)
    totals = sums if totals is None else jax.tree_util.tree_map(operator.add, totals, sums)
  if totals is None:
    return dict(correct=0.0, correct_top5=0.0, loss=0.0, count=0.0)
  return {k: float(v) for k, v in devices.unreplicate(totals).items()}


class ClassificationEvaluator:
  """Top-1/top-5 accuracy and mean loss over a whole split (padding masked out).

  `run(params)` returns `<name>_accuracy`, `<name>_top5_accuracy`, `<name>_loss` and
  `<name>_count` (with the default name 'eval': the trainer's `eval_accuracy`, ...).
  """

  # config.evals options (None: the run config's dataset, eval_split, data_dir, batch_eval).
  OPTIONS = dict(
      dataset=None,  # tfds name or 'image_folder' (None: config.dataset)
      split=None,  # split scored, every example once (None: config.eval_split)
      data_dir=None,  # tfds data_dir (None: config.data_dir)
      batch=None,  # global eval batch (None: config.batch_eval)
      pp=None,  # config.pp keys changed for this evaluation, e.g. dict(eval_mode='resize')
  )

  def __init__(self, *, config: ml_collections.ConfigDict, model: Any, name: str = 'eval',
               options: ml_collections.ConfigDict | None = None, progress: bool = False):
    """Reads the options; the pmapped eval step is built at the first `run`.

    Args:
      config: the run config.
      model: the `MlpMixer` (None: only `data()` is asked, before training).
      name: prefix of the metric names.
      options: the `config.evals` entry: `every` and `OPTIONS`.
      progress: show a tqdm progress bar.
    """
    options = {**self.OPTIONS, **dict(options or {})}
    config = inputs.eval_config(config, dataset=options['dataset'], split=options['split'],
                                data_dir=options['data_dir'], batch=options['batch'],
                                pp=options['pp'], num_classes=config.num_classes)
    n = jax.local_device_count()  # the eval batch must split evenly over the devices
    config.batch_eval = -(-int(config.batch_eval) // n) * n
    self.name, self.config, self.model, self.progress = name, config, model, progress
    self.every = int(options.get('every') or 1)

  @functools.cached_property
  def eval_step(self) -> Any:
    """The pmapped step of `training.step.make_eval_step`."""
    from mixer_flax.training import step as step_lib  # pylint: disable=g-import-not-at-top
    return step_lib.make_eval_step(model=self.model, config=self.config)

  @functools.cached_property
  def param_shapes(self) -> Any:
    """Parameter shapes, to tell replicated params from plain ones."""
    size = self.config.image_size
    return jax.eval_shape(lambda: self.model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32)))['params']

  def data(self) -> list[tuple[str, str]]:
    """The (dataset, split) this evaluator reads."""
    return [(self.config.dataset, self.config.eval_split)]

  def run(self, params: Any) -> dict[str, float]:
    """Metrics of `params` (replicated over the local devices, or not)."""
    if not devices.is_replicated(params, self.param_shapes):
      params = devices.replicate(params)
    sums = eval_sums(self.eval_step, params, self.config, progress=self.progress)
    count = max(sums['count'], 1.0)
    return {f'{self.name}_accuracy': sums['correct'] / count,
            f'{self.name}_top5_accuracy': sums['correct_top5'] / count,
            f'{self.name}_loss': sums['loss'] / count, f'{self.name}_count': sums['count']}


def evaluate_params(config: ml_collections.ConfigDict, model: Any, params: Any, *,
                    progress: bool = False) -> dict[str, float]:
  """`ClassificationEvaluator` 'eval' on `config.dataset[config.eval_split]`.

  Returns:
    dict(eval_accuracy, eval_top5_accuracy, eval_loss, eval_count).

  Raises:
    ValueError: no example was scored.
  """
  metrics = ClassificationEvaluator(config=config, model=model, progress=progress).run(params)
  if not metrics['eval_count']:
    raise ValueError(f'No examples were scored in {config.dataset}[{config.eval_split}].')
  return metrics
