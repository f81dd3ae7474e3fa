"""Checks a run config before anything is compiled and reports every problem at once.

The entry points call `validate(config)` first; no other module re-checks these keys. The
checks need the model zoo, the optimizer and the evaluators, so they live here, not in the
plain-data `config.py`. Dataset and preprocessing checks: `validate_data.py`.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import ml_collections
import numpy as np

from mixer_flax import config as config_lib
from mixer_flax import eval as eval_lib
from mixer_flax import fileio, models, validate_data
from mixer_flax.training import losses, optim, sam

_REQUIRED = ('model_name', 'batch', 'total_steps', 'base_lr', 'warmup_steps', 'decay_type',
             'optimizer', 'loss', 'image_size')


def _is_int(v: Any, kinds: tuple[type, ...] = (int, np.integer)) -> bool:
  return isinstance(v, kinds) and not isinstance(v, bool)


_is_number = functools.partial(_is_int, kinds=(int, float, np.integer, np.floating))


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int | None = None, check_files: bool = True) -> None:
  """Checks `config` (keys: `config.base_config`); reports every problem at once.

  Args:
    config: the run config.
    num_devices, process_count: local devices and processes (default: JAX's).
    check_files: also check that a local `config.pretrained_path` exists (remote ones are
      reached, and so checked, before training: `preflight.py`).

  Raises:
    ValueError: naming each offending config key and what to do.
    FileNotFoundError: `config.pretrained_path` does not exist.
  """
  if process_count is None or num_devices is None:
    import jax  # pylint: disable=g-import-not-at-top  (starts the backend: not at import)
    process_count = jax.process_count() if process_count is None else process_count
    num_devices = jax.local_device_count() if num_devices is None else num_devices
  problems = _key_problems(config)
  problems += [f'config.{k} is missing' for k in _REQUIRED if k not in config]
  shards = process_count * num_devices
  if not any(p.endswith('is missing') for p in problems):  # the checks below read them
    problems += (_batch_problems(config, shards) + _optim_problems(config)
                 + _model_problems(config) + validate_data.data_problems(config, shards)
                 + _loop_problems(config) + sam.sam_problems(config))
  if problems:
    raise ValueError('Invalid config: ' + '; '.join(problems) + '.')
  path = config.get('pretrained_path', None) or ''
  if check_files and path and fileio.is_local(path) and not fileio.exists(path):
    raise FileNotFoundError(f'config.pretrained_path={path!r} does not exist; give the path '
                            'of an .npz checkpoint (local, gs:// or https://) or set it to None.')


def override_problems(config: ml_collections.ConfigDict,
                      file_config: ml_collections.ConfigDict, *,
                      dataset_classes: int | None = None) -> list[str]:
  """`num_classes` and evaluators the config file set for the dataset the command line replaced.

  E.g. experiments/imagenet_b16.py with `--config.dataset=sklearn_digits` keeps a 1000-class
  head and a few-shot evaluator of imagenet2012 unless they are overridden too.

  Args:
    config: the run config.
    file_config: the config as its file defines it, before command-line overrides.
    dataset_classes: the class count of `config.dataset`, when known.
  """
  old, new = file_config.get('dataset', None), config.get('dataset', None)
  if old == new:
    return []
  problems = []
  given = f'--config.dataset={new}'
  classes = config.get('num_classes', None)
  if classes is not None and classes == file_config.get('num_classes', None):
    count = (f'--config.num_classes={dataset_classes} (its class count)' if dataset_classes
             else '--config.num_classes to its class count')
    problems.append(f'config.num_classes={classes} is the class count the config file set for '
                    f'{old!r}; with {given} set {count}')
  file_evals = file_config.get('evals', None) or {}
  for evaluator in eval_lib.build_evaluators(config, model=None):
    name = evaluator.name
    reads = sorted({dataset for dataset, _ in evaluator.data()})
    same = dict(file_evals.get(name, None) or {}) == dict(config.evals[name])
    if old in reads and same:
      key = 'datasets' if 'datasets' in eval_lib.evaluator_class(config.evals[name].type).OPTIONS \
          else 'dataset'
      value = f'"(\'{new}\',)"' if key == 'datasets' else new
      problems.append(f'config.evals.{name} reads {old!r}, the config file\'s dataset; with '
                      f'{given} set --config.evals.{name}.{key}={value} (or another prepared '
                      'dataset)')
  return problems


def unknown_key_message(key: str, known: list[str]) -> str:
  """'config.KEY ...' for a key the trainer does not know: replaced, or a likely typo."""
  if key in config_lib.REPLACED_KEYS:
    return f'config.{key} was replaced by {config_lib.REPLACED_KEYS[key]}'
  close = difflib.get_close_matches(key, known, n=1)
  hint = f'; did you mean config.{close[0]}?' if close else ''
  return f'config.{key} is not a trainer key{hint} (all keys: mixer_flax/config.py)'


def _key_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Keys that base_config does not define (typos, keys of earlier versions)."""
  base = config_lib.base_config()
  problems = [unknown_key_message(k, list(base)) for k in config if k not in base]
  pp = config.get('pp', None) or {}
  problems += [unknown_key_message(f'pp.{k}', [f'pp.{b}' for b in base.pp])
               for k in pp if k not in base.pp]
  return problems


def _batch_problems(config: ml_collections.ConfigDict, shards: int) -> list[str]:
  """Batch sizes, steps and their divisibility over `shards` = processes x local devices."""
  problems = []
  accum = config.get('accum_steps', 1)
  for key, value in (('batch', config.batch), ('total_steps', config.total_steps),
                     ('accum_steps', accum)):
    if not _is_int(value) or value <= 0:
      problems.append(f'config.{key}={value!r} must be a positive int')
  if not problems and config.batch % (shards * accum):
    problems.append(f'config.batch={config.batch} is not divisible by processes x local devices '
                    f'({shards}) x config.accum_steps ({accum}) = {shards * accum}; choose a '
                    'multiple of it or change accum_steps')
  batch_eval = config.get('batch_eval', None)
  if batch_eval is not None and (not _is_int(batch_eval) or batch_eval <= 0
                                 or batch_eval % shards):
    problems.append(f'config.batch_eval={batch_eval!r} must be a positive multiple of processes '
                    f'x local devices = {shards}')
  return problems


def _optim_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Optimizer, schedule and loss keys."""
  get, problems = config.get, []
  if not _is_int(config.warmup_steps) or config.warmup_steps < 0:  # > total_steps: all warm-up
    problems.append(f'config.warmup_steps={config.warmup_steps!r} must be an int >= 0')
  if not _is_number(config.base_lr) or config.base_lr <= 0:
    problems.append(f'config.base_lr={config.base_lr!r} must be a number > 0')
  for key in ('end_lr', 'weight_decay'):
    if not _is_number(get(key, 0.0)) or get(key, 0.0) < 0:
      problems.append(f'config.{key}={get(key)!r} must be a number >= 0')
  choices = {'decay_type': optim.DECAY_TYPES, 'optimizer': optim.OPTIMIZERS,
             'optim_dtype': optim.OPTIM_DTYPES, 'loss': losses.LOSSES}
  for key, allowed in choices.items():
    if get(key, 'float32') not in allowed:
      problems.append(f'config.{key}={get(key)!r} must be one of {allowed}')
  clip = get('grad_norm_clip', None)
  if clip is not None and (not _is_number(clip) or clip < 0):
    problems.append(f'config.grad_norm_clip={clip!r} must be None or a number >= 0')
  if config.optimizer == 'sgd' and not _is_number(get('momentum', None)):
    problems.append(f"config.momentum={get('momentum')!r} must be a number for optimizer='sgd'")
  ls = get('label_smoothing', 0.0) or 0.0
  if not _is_number(ls) or not 0.0 <= ls < 1.0:
    problems.append(f'config.label_smoothing={ls!r} must be in [0, 1)')
  elif ls and config.loss != 'softmax_xent':
    problems.append(f"config.label_smoothing={ls} is only defined for loss='softmax_xent'")
  return problems


def _model_problems(config: ml_collections.ConfigDict) -> list[str]:
  """`model_name`, `model` overrides, `image_size` and the pretrained resolution."""
  if config.model_name not in models.MODEL_CONFIGS:
    return [f'config.model_name={config.model_name!r} is unknown; known: '
            f'{", ".join(models.MODEL_CONFIGS)}']
  problems = []
  overrides = dict(config.get('model', None) or {})
  unknown = models.zoo.unknown_overrides(overrides)
  if unknown:
    problems.append(f'config.model has unknown key(s) {unknown}; allowed: '
                    f'{", ".join(models.OVERRIDABLE)}')
  patch = overrides.get('patch_size') or models.MODEL_CONFIGS[config.model_name].patch_size
  size = config.image_size
  if not _is_int(size) or size <= 0 or size % patch:
    problems.append(f'config.image_size={size!r} must be a positive multiple of the patch size '
                    f'{patch} of {config.model_name}')
  if str(overrides.get('dtype') or 'float32') not in ('float32', 'bfloat16', 'float16'):
    problems.append(f"config.model.dtype={overrides['dtype']!r} must be float32|bfloat16|float16")
  pre_size = config.get('pretrained_image_size', None)
  if config.get('pretrained_path', None) and not (_is_int(pre_size) and pre_size > 0):
    # Any image_size works: integer multiples adapt token mixing block-diagonally, others resample.
    problems.append(f'config.pretrained_image_size={pre_size!r} must be the positive side (px) '
                    'the checkpoint was trained at')
  return problems


def _loop_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The step intervals of the training loop and the evaluators of `config.evals`."""
  problems = []
  for key in ('checkpoint_every', 'progress_every', 'keep_checkpoints'):
    value = config.get(key, None)
    if key in config and (not _is_int(value) or value <= 0):
      problems.append(f'config.{key}={value!r} must be a positive int')
  for name, entry in (config.get('evals', None) or {}).items():
    problems += eval_lib.entry_problems(name, entry)
  return problems
