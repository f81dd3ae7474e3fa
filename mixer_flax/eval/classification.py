"""Exact top-1/top-5 evaluation on a tfds split or an image folder: the classification evaluator.

`ClassificationEvaluator` is the trainer's periodic evaluation (`config.evals` type
'classification') and the library behind `scripts/evaluate.py` and
`scripts/reproduce_tables.py`. It reuses the trainer's pieces: `data.pipeline.get_eval_iterator`
(every example exactly once, padded and masked) and `training.step.make_eval_step` (pmapped
over all local devices, psum'd sums). Extras:

* `imagenet2012_real`: labels are multi-hot ReaL sets; examples whose ReaL set
  is empty are excluded (mask 0), as in the ReaL paper;
* `load_model` reads the architecture off the checkpoint (`checkpoint.info.infer_architecture`),
  so any official or own `.npz` evaluates without naming the model.
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mixer_flax import config as config_lib
from mixer_flax import devices, models
from mixer_flax.checkpoint.info import infer_architecture

# Datasets whose label sets may be empty for some examples (excluded from scoring).
MULTI_LABEL_DATASETS = ('imagenet2012_real',)
# tfds label feature of datasets whose labels are not in 'label'.
LABEL_KEYS = {'imagenet2012_real': 'real_label'}


def eval_config(*, dataset: str, split: str, image_size: int, model_name: str,
                eval_mode: str = 'resize_small_crop', eval_resize: int | None = None,
                batch: int = 256, data_dir: str | None = None, folder_root: str | None = None,
                num_classes: int | None = None) -> ml_collections.ConfigDict:
  """A trainer-style config for evaluation (keys of `config.base_config`).

  `eval_resize` defaults to `config.eval_resize_for(image_size)` (256 for 224).
  """
  return ml_collections.ConfigDict(dict(
      model_name=model_name, dataset=dataset, eval_split=split, train_split='train',
      data_dir=data_dir, folder_root=folder_root, manual_dir=None, num_classes=num_classes,
      image_key='image', label_key=LABEL_KEYS.get(dataset, 'label'),
      image_size=image_size, batch_eval=batch, batch=batch, prefetch=0, tf_threads=0,
      shuffle_buffer=1, loss='softmax_xent', label_smoothing=0.0,
      pp=dict(config_lib.PP_DEFAULTS, eval_mode=eval_mode,
              eval_resize=eval_resize or config_lib.eval_resize_for(image_size))))


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
  """Top-1/top-5 accuracy and mean loss over the whole eval split (padding masked out).

  `run(params)` returns `<name>_accuracy`, `<name>_top5_accuracy`, `<name>_loss` and
  `<name>_count` (with the default name 'eval': the trainer's `eval_accuracy`, ...).
  """

  def __init__(self, *, config: ml_collections.ConfigDict, model: Any, name: str = 'eval',
               options: ml_collections.ConfigDict | None = None, progress: bool = False):
    """Builds the pmapped eval step.

    Args:
      config: trainer-style config; `options` may override `dataset`, `eval_split`,
        `data_dir`, `pp` and `batch_eval` for this evaluator.
      model: the `MlpMixer`.
      name: prefix of the metric names.
      options: the `config.evals` entry (`every`, overrides above).
      progress: show a tqdm progress bar.
    """
    from mixer_flax.training import step as step_lib  # pylint: disable=g-import-not-at-top

    options = dict(options or {})
    config = ml_collections.ConfigDict(config.to_dict())
    for key in ('dataset', 'eval_split', 'data_dir', 'batch_eval', 'pp'):
      if options.get(key) is not None:
        config[key] = options[key]
    n = jax.local_device_count()  # the eval batch must split evenly over the devices
    config.batch_eval = -(-int(config.batch_eval) // n) * n
    self.name, self.config, self.model, self.progress = name, config, model, progress
    self.every = int(options.get('every') or config.get('eval_every', 1) or 1)
    self.eval_step = step_lib.make_eval_step(model=model, config=config)
    size = config.image_size  # parameter shapes, to tell replicated params from plain ones
    self.param_shapes = jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3), jnp.float32)))['params']

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
  """`ClassificationEvaluator(config, model).run(params)` for `config.dataset[config.eval_split]`.

  Returns:
    dict(eval_accuracy, eval_top5_accuracy, eval_loss, eval_count).

  Raises:
    ValueError: no example was scored.
  """
  metrics = ClassificationEvaluator(config=config, model=model, progress=progress).run(params)
  if not metrics['eval_count']:
    raise ValueError(f'No examples were scored in {config.dataset}[{config.eval_split}].')
  return metrics


def load_model(path: str, *, image_size: int | None = None, num_classes: int | None = None):
  """Loads an `.npz` and builds the matching model.

  Returns:
    `(model, params, arch)` with `arch` from `checkpoint.info.infer_architecture`.
  """
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top

  params = checkpoint.load_npz(path)
  arch = infer_architecture(params, image_size=image_size)
  if num_classes is not None and num_classes != arch['num_classes']:
    raise ValueError(f'{path} has a {arch["num_classes"]}-class head but the dataset has '
                     f'{num_classes} classes; fine-tune it first (mixer_flax.main).')
  model = models.create_model(arch['model_name'], num_classes=arch['num_classes'],
                              **arch['overrides'])
  return model, params, arch
