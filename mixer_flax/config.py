"""The run config: `base_config()` (every trainer key, one comment each), `validate`.

`validate(config)` checks every key before anything is compiled and reports all problems at
once; no other module re-checks them. `load_experiment` and `parse_arg`: `experiment.py`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import numpy as np
from ml_collections import config_dict

from mixer_flax import config_data, fileio, models
from mixer_flax.config_data import EVAL_MODES, PP_DEFAULTS, TRAIN_CROPS  # noqa: F401 (config.pp)
from mixer_flax.experiment import load_experiment, parse_arg  # noqa: F401  (the config API)
from mixer_flax.models import layout
from mixer_flax.training import losses, optim, sam


def eval_resize_for(image_size: int) -> int:
  """Shorter side to resize to before the central crop: 256 for 224 (ratio 8/7)."""
  return image_size * 8 // 7


def base_config() -> ml_collections.ConfigDict:
  """All trainer keys with neutral defaults (float32, no augmentation, no wd)."""
  c = ml_collections.ConfigDict()
  c.model_name = 'Mixer-B_16'  # a key of models.MODEL_CONFIGS
  # create_model overrides; performance-only keys (same function) may be added: inference_chunk,
  # remat, token_layout, token_hidden, gelu_remat (models/layout.py, docs/performance.md).
  c.model = ml_collections.ConfigDict(dict(
      stoch_depth=0.0, dropout=0.0, head_bias_init=0.0, dtype='float32',
      tokens_mlp_dim=config_dict.placeholder(int)))
  c.pretrained_path = config_dict.placeholder(str)  # checkpoint to fine-tune from (any URL)
  c.pretrained_image_size = 224  # resolution the pretrained checkpoint was trained at
  c.dataset = 'imagenet2012'  # tfds name, or 'image_folder'
  c.folder_root = config_dict.placeholder(str)  # image_folder: root/{train,test}/<class>/*
  c.data_dir = config_dict.placeholder(str)  # tfds data_dir (None: tfds default)
  c.manual_dir = config_dict.placeholder(str)  # tfds manual_dir (ImageNet archives)
  c.train_split = 'train[:99%]'  # tfds split string
  c.eval_split = 'train[99%:]'  # tfds split string of the classification evaluator
  c.num_classes = config_dict.placeholder(int)  # head width (None: from the dataset)
  c.label_key = 'label'  # tfds label feature (e.g. 'label_azimuth' of smallnorb)
  c.record_fn = config_dict.placeholder(str)  # 'module:fn': tfds example -> {image, label}
  c.image_size = 224  # train crop / eval crop side
  c.pp = ml_collections.ConfigDict(PP_DEFAULTS)  # preprocessing, see PP_DEFAULTS
  c.shuffle_buffer = 50_000  # records in the train shuffle buffer
  c.prefetch = 2  # batches placed on the devices ahead of the step
  c.tf_threads = 0  # tf.data private threadpool size (0: half the cores, <= 16)

  c.batch = 512  # global train batch (all processes and devices)
  c.batch_eval = 512  # global eval batch
  c.accum_steps = 1  # microbatches per device per step (gradient accumulation)
  c.total_steps = 10_000  # optimizer updates
  c.base_lr = 0.03  # peak learning rate
  c.warmup_steps = 500  # linear warm-up steps (>= total_steps: the whole run warms up)
  c.decay_type = 'cosine'  # 'cosine' | 'linear' decay to end_lr after the warm-up
  c.end_lr = 0.0  # learning rate at the last step
  c.optimizer = 'sgd'  # 'sgd' (momentum) | 'adam'
  c.weight_decay = 0.0  # decoupled, kernels only, multiplied by the scheduled lr
  c.momentum = 0.9  # SGD momentum (0 disables it)
  c.optim_dtype = 'float32'  # Adam first moment / SGD momentum dtype ('bfloat16' halves it)
  c.grad_norm_clip = 1.0  # global-norm gradient clipping (None or 0 disables it)
  c.loss = 'softmax_xent'  # 'softmax_xent' | 'sigmoid_xent'
  c.label_smoothing = 0.0  # softmax_xent only
  # SAM / GSAM (training/sam.py): a second forward/backward pass per step when rho is set.
  c.sam = ml_collections.ConfigDict(dict(
      rho=config_dict.placeholder(float),  # perturbation radius (GSAM: rho_max); None: off
      rho_min=config_dict.placeholder(float),  # GSAM: rho at end_lr, linear in lr; None: rho
      alpha=0.0))  # GSAM: weight of the ascent orthogonal to the perturbed gradient; 0: SAM

  c.eval_every = 1_000  # steps between classification evals (when evals is empty)
  c.checkpoint_every = 1_000  # steps between orbax checkpoints
  c.keep_checkpoints = 3  # newest checkpoints kept
  c.progress_every = 100  # steps between progress lines / train metrics
  c.seed = 0  # parameter init, data order and dropout randomness
  c.fewshot = config_dict.placeholder(ml_collections.ConfigDict)  # eval.fewshot settings
  c.evals = ml_collections.ConfigDict()  # name -> {type, every, options}: mixer_flax/eval
  return c


TRAINER_KEYS = tuple(base_config().keys())  # the keys every config defines
EVALUATOR_TYPES = ('classification', 'fewshot')  # config.evals[*].type (mixer_flax/eval)


def evals(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
  """`config.evals`, else 'eval' (classification, every `eval_every`) [+ 'fewshot' options]."""
  if config.get('evals'):
    return {k: ml_collections.ConfigDict(dict(v)) for k, v in config.evals.items()}
  every = config.get('eval_every', None)
  out = {'eval': ml_collections.ConfigDict(dict(type='classification', every=every))}
  if config.get('fewshot'):
    fs = dict(config.fewshot)
    out['fewshot'] = ml_collections.ConfigDict(dict(fs, type='fewshot', every=fs.get('every')
                                                    or every))
  return out


_REQUIRED = ('model_name', 'batch', 'total_steps', 'base_lr', 'warmup_steps', 'decay_type',
             'optimizer', 'loss', 'image_size')


def _is_int(v: Any, kinds: tuple[type, ...] = (int, np.integer)) -> bool:
  return isinstance(v, kinds) and not isinstance(v, bool)


_is_number = functools.partial(_is_int, kinds=(int, float, np.integer, np.floating))


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int | None = None, check_files: bool = True) -> None:
  """Checks `config` before anything is compiled; reports every problem at once.

  Args:
    num_devices, process_count: local devices and processes (default: jax's).
    check_files: also check that `config.pretrained_path` exists.

  Raises:
    ValueError: naming each offending config key and what to do.
    FileNotFoundError: `config.pretrained_path` does not exist.
  """
  process_count = jax.process_count() if process_count is None else process_count
  num_devices = jax.local_device_count() if num_devices is None else num_devices
  problems = [f'config.{k} is missing' for k in _REQUIRED if k not in config]
  shards = process_count * num_devices
  if not problems:  # the checks below read the required keys
    problems = (_batch_problems(config, shards) + _optim_problems(config)
                + _model_problems(config) + config_data.data_problems(config, shards)
                + _loop_problems(config) + sam.sam_problems(config))
  if problems:
    raise ValueError('Invalid config: ' + '; '.join(problems) + '.')
  path = config.get('pretrained_path', None) or ''  # http(s): fetched, checked by load_npz
  if check_files and path and not path.startswith(('http:', 'https:')) and not fileio.exists(path):
    raise FileNotFoundError(f'config.pretrained_path={path!r} does not exist; give the path '
                            'of an .npz checkpoint (local, gs:// or https://) or set it to None.')


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
  for key, allowed in (('token_layout', layout.LAYOUTS), ('token_hidden', layout.HIDDENS)):
    if overrides.get(key) is not None and overrides[key] not in allowed:
      problems.append(f'config.model.{key}={overrides[key]!r} must be one of '
                      f'{"|".join(allowed)} or None (per backend)')
  pre_size = config.get('pretrained_image_size', None)
  if config.get('pretrained_path', None) and not (_is_int(pre_size) and pre_size > 0):
    # Any image_size works: integer multiples adapt token mixing block-diagonally, others resample.
    problems.append(f'config.pretrained_image_size={pre_size!r} must be the positive side (px) '
                    'the checkpoint was trained at')
  return problems


def _loop_problems(config: ml_collections.ConfigDict) -> list[str]:
  """The step intervals of the training loop and the evaluators."""
  problems = []
  for key in ('eval_every', 'checkpoint_every', 'progress_every'):
    value = config.get(key, None)
    if key in config and (not _is_number(value) or int(value) <= 0):
      problems.append(f'config.{key}={value!r} must be a positive number of steps')
  if problems or not (config.get('evals') or 'eval_every' in config):
    return problems
  for name, entry in evals(config).items():
    if entry.get('type') not in EVALUATOR_TYPES:
      problems.append(f'config.evals.{name}.type={entry.get("type")!r} must be one of '
                      f'{EVALUATOR_TYPES}')
    if not _is_int(entry.get('every')) or entry.get('every') <= 0:
      problems.append(f'config.evals.{name}.every={entry.get("every")!r} must be a positive '
                      'number of steps')
  return problems
