"""The run config: defaults (`base_config`), `validate`, and loading experiment files.

`base_config()` holds every trainer key; the `experiments/` files start from it and
set only what their experiment changes. `validate(config)` checks every key before
anything is compiled and reports all problems at once.
"""

from __future__ import annotations

import importlib.util
import os

import jax
import ml_collections
import numpy as np
from ml_collections import config_dict

from mixer_flax import fileio, models
from mixer_flax.training import losses, optim

# Preprocessing (`config.pp`): train crops, eval modes and the defaults of every key.
TRAIN_CROPS = ('inception', 'resize')
EVAL_MODES = ('resize_small_crop', 'resize_crop', 'resize')
PP_DEFAULTS = dict(crop='inception', area_min=0.05, flip=True, randaug_layers=0,
                   randaug_magnitude=0, mixup_alpha=0.0, eval_mode='resize_small_crop',
                   eval_resize=256)


def eval_resize_for(image_size: int) -> int:
  """Shorter side to resize to before the central crop: 256 for 224 (ratio 8/7)."""
  return image_size * 8 // 7


def base_config() -> ml_collections.ConfigDict:
  """All trainer keys with neutral defaults (float32, no augmentation, no wd)."""
  c = ml_collections.ConfigDict()
  c.model_name = 'Mixer-B_16'
  c.model = ml_collections.ConfigDict(dict(
      stoch_depth=0.0, dropout=0.0, head_bias_init=0.0, dtype='float32',
      tokens_mlp_dim=config_dict.placeholder(int)))
  c.pretrained_path = config_dict.placeholder(str)
  c.pretrained_image_size = 224

  c.dataset = 'imagenet2012'
  c.folder_root = config_dict.placeholder(str)
  c.data_dir = config_dict.placeholder(str)
  c.manual_dir = config_dict.placeholder(str)
  c.train_split = 'train[:99%]'
  c.eval_split = 'train[99%:]'
  c.num_classes = config_dict.placeholder(int)
  c.image_size = 224
  c.pp = ml_collections.ConfigDict(PP_DEFAULTS)
  c.shuffle_buffer = 50_000
  c.prefetch = 2
  c.tf_threads = 0

  c.batch = 512
  c.batch_eval = 512
  c.accum_steps = 1
  c.total_steps = 10_000
  c.base_lr = 0.03
  c.warmup_steps = 500
  c.decay_type = 'cosine'
  c.end_lr = 0.0
  c.optimizer = 'sgd'
  c.weight_decay = 0.0
  c.momentum = 0.9
  c.optim_dtype = 'float32'
  c.grad_norm_clip = 1.0
  c.loss = 'softmax_xent'
  c.label_smoothing = 0.0

  c.eval_every = 1_000
  c.checkpoint_every = 1_000
  c.keep_checkpoints = 3
  c.progress_every = 100
  c.seed = 0
  c.fewshot = config_dict.placeholder(ml_collections.ConfigDict)
  return c



_REQUIRED = ('model_name', 'batch', 'total_steps', 'base_lr', 'warmup_steps', 'decay_type',
             'optimizer', 'loss', 'image_size')


# Keys every config defines (docs/design.md): those of `base_config`.
TRAINER_KEYS = tuple(base_config().keys())


def validate(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
             process_count: int | None = None, check_files: bool = True) -> None:
  """Checks `config` before anything is compiled; reports every problem at once.

  Args:
    config: the run config.
    num_devices: local devices the steps are pmapped over (default
      `jax.local_device_count()`).
    process_count: number of processes (default `jax.process_count()`).
    check_files: also check that `config.pretrained_path` exists.

  Raises:
    ValueError: naming each offending config key and what to do.
    FileNotFoundError: `config.pretrained_path` does not exist.
  """
  process_count = jax.process_count() if process_count is None else process_count
  num_devices = jax.local_device_count() if num_devices is None else num_devices
  problems = [f'config.{k} is missing' for k in _REQUIRED if k not in config]
  if problems:
    raise ValueError('Invalid config: ' + '; '.join(problems) + '.')

  def is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

  get = config.get
  accum = get('accum_steps', 1)
  for key in ('batch', 'total_steps'):
    if not is_int(config[key]) or config[key] <= 0:
      problems.append(f'config.{key}={config[key]!r} must be a positive int')
  if not is_int(accum) or accum <= 0:
    problems.append(f'config.accum_steps={accum!r} must be a positive int')
  # warmup_steps >= total_steps is allowed (short test runs): the whole run is warm-up.
  if not is_int(config.warmup_steps) or config.warmup_steps < 0:
    problems.append(f'config.warmup_steps={config.warmup_steps!r} must be an int >= 0')
  if not problems:
    shards = process_count * num_devices * accum
    if config.batch % shards:
      problems.append(
          f'config.batch={config.batch} is not divisible by processes ({process_count}) x local '
          f'devices ({num_devices}) x config.accum_steps ({accum}) = {shards}; choose a multiple '
          'of it or change accum_steps')
    if float(dict(get('pp', None) or {}).get('mixup_alpha') or 0) > 0 and (
        config.batch // (process_count * num_devices)) % 2:  # mixup pairs within a device
      problems.append('config.pp.mixup_alpha > 0 needs an even per-device batch (config.batch)')
  batch_eval = get('batch_eval', None)
  if batch_eval is not None and (not is_int(batch_eval) or batch_eval <= 0
                                 or batch_eval % (process_count * num_devices)):
    problems.append(f'config.batch_eval={batch_eval!r} must be a positive multiple of processes '
                    f'x local devices = {process_count * num_devices}')
  if not isinstance(config.base_lr, (int, float)) or config.base_lr <= 0:
    problems.append(f'config.base_lr={config.base_lr!r} must be a number > 0')
  end_lr = get('end_lr', 0.0)
  if not isinstance(end_lr, (int, float)) or end_lr < 0:
    problems.append(f'config.end_lr={end_lr!r} must be a number >= 0')
  choices = {'decay_type': optim.DECAY_TYPES, 'optimizer': optim.OPTIMIZERS, 'loss': losses.LOSSES}
  for key, allowed in choices.items():
    if config[key] not in allowed:
      problems.append(f'config.{key}={config[key]!r} must be one of {allowed}')
  if get('optim_dtype', 'float32') not in optim.OPTIM_DTYPES:
    problems.append(f'config.optim_dtype={get("optim_dtype")!r} must be one of '
                    f'{optim.OPTIM_DTYPES}')
  wd = get('weight_decay', 0.0)
  if not isinstance(wd, (int, float)) or wd < 0:
    problems.append(f'config.weight_decay={wd!r} must be a number >= 0')
  clip = get('grad_norm_clip', None)
  if clip is not None and (not isinstance(clip, (int, float)) or clip < 0):
    problems.append(f'config.grad_norm_clip={clip!r} must be None or a number >= 0')
  if config.optimizer == 'sgd' and not isinstance(get('momentum', None), (int, float)):
    problems.append(f'config.momentum={get("momentum", None)!r} must be a number for '
                    "optimizer='sgd' (0 disables momentum)")
  ls = get('label_smoothing', 0.0) or 0.0
  if not isinstance(ls, (int, float)) or not 0.0 <= ls < 1.0:
    problems.append(f'config.label_smoothing={ls!r} must be in [0, 1)')
  elif ls and config.loss != 'softmax_xent':
    problems.append(f"config.label_smoothing={ls} is only defined for loss='softmax_xent'")
  problems += _model_problems(config) + _pp_problems(config) + _loop_problems(config)
  if get('dataset', None) == 'image_folder' and not get('folder_root', None):
    problems.append("config.folder_root must be set for dataset='image_folder' "
                    '(a directory with train/<class>/* and test/<class>/*)')
  pre_size = get('pretrained_image_size', None)
  if (get('pretrained_path', None) and isinstance(pre_size, int) and pre_size > 0
      and isinstance(config.image_size, int) and config.image_size % pre_size):
    problems.append(f'config.image_size={config.image_size} must be an integer multiple of '
                    f'config.pretrained_image_size={pre_size} to adapt the pre-trained '
                    'token-mixing MLPs')
  if problems:
    raise ValueError('Invalid config: ' + '; '.join(problems) + '.')
  path = get('pretrained_path', None)
  if check_files and path and not fileio.exists(path):
    raise FileNotFoundError(f'config.pretrained_path={path!r} does not exist; give the path '
                            'of an .npz checkpoint (local or gs://) or set it to None.')


def _loop_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Problems with the step intervals of the training loop."""
  problems = []
  for key in ('eval_every', 'checkpoint_every', 'progress_every'):
    value = config.get(key, None)
    if key in config and (not isinstance(value, (int, float)) or int(value) <= 0):
      problems.append(f'config.{key}={value!r} must be a positive number of steps')
  return problems


def _pp_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Problems with the preprocessing settings `config.pp` (defaults: `PP_DEFAULTS`)."""
  pp = dict(PP_DEFAULTS, **dict(config.get('pp', None) or {}))
  problems = []
  if pp['crop'] not in TRAIN_CROPS:
    problems.append(f"config.pp.crop={pp['crop']!r} must be one of {TRAIN_CROPS}")
  if pp['eval_mode'] not in EVAL_MODES:
    problems.append(f"config.pp.eval_mode={pp['eval_mode']!r} must be one of {EVAL_MODES}")
  if not 0.0 < pp['area_min'] <= 1.0:
    problems.append(f"config.pp.area_min={pp['area_min']} must be in (0, 1]")
  for key in ('mixup_alpha', 'randaug_layers', 'randaug_magnitude'):
    if pp[key] < 0:
      problems.append(f'config.pp.{key}={pp[key]} must be >= 0')
  return problems


def _model_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Problems with `model_name`, `model` overrides and `image_size`."""
  if config.model_name not in models.MODEL_CONFIGS:
    return [f'config.model_name={config.model_name!r} is unknown; known: '
            f'{", ".join(models.MODEL_CONFIGS)}']
  problems = []
  overrides = dict(config.get('model', None) or {})
  unknown = sorted(set(overrides) - set(models.OVERRIDABLE))
  if unknown:
    problems.append(f'config.model has unknown key(s) {unknown}; allowed: '
                    f'{", ".join(models.OVERRIDABLE)}')
  patch = overrides.get('patch_size') or models.MODEL_CONFIGS[config.model_name].patch_size
  size = config.image_size
  if not isinstance(size, int) or size <= 0 or size % patch:
    problems.append(f'config.image_size={size!r} must be a positive multiple of the patch size '
                    f'{patch} of {config.model_name}')
  dtype = overrides.get('dtype') or 'float32'
  if str(dtype) not in ('float32', 'bfloat16', 'float16'):
    problems.append(f"config.model.dtype={dtype!r} must be 'float32', 'bfloat16' or 'float16'")
  return problems


def load_experiment(spec: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` of experiment file `spec` = 'file.py[:ARG]', as `--config=` loads it.

  A relative path that does not exist from the working directory is looked up from the
  repository root.
  """
  path, sep, arg = spec.partition('.py:')
  path = path + '.py' if sep else spec
  if not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.exists(os.path.join(root, path)):
      path = os.path.join(root, path)
    else:
      raise FileNotFoundError(f'Experiment file {path} does not exist (spec {spec!r}).')
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f'experiment_{name}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if sep else module.get_config()
