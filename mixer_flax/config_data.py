"""The data keys of the run config: `config.pp` (PP_DEFAULTS) and their checks.

`config.validate` calls `data_problems`; config.py re-exports the constants.
"""

from __future__ import annotations

import numbers

import ml_collections

# Preprocessing (`config.pp`): train crops, eval modes and the defaults of every key.
TRAIN_CROPS = ('inception', 'resize')
EVAL_MODES = ('resize_small_crop', 'resize_crop', 'resize')
PP_DEFAULTS = dict(crop='inception', area_min=0.05, flip=True, randaug_layers=0,
                   randaug_magnitude=0, mixup_alpha=0.0, eval_mode='resize_small_crop',
                   eval_resize=256)
# Keys with a fixed set of values.
PP_CHOICES = {'crop': TRAIN_CROPS, 'eval_mode': EVAL_MODES}


def data_problems(config: ml_collections.ConfigDict, shards: int) -> list[str]:
  """The dataset and `config.pp` (over PP_DEFAULTS); shards = processes x local devices."""
  problems = []
  if config.get('dataset', None) == 'image_folder' and not config.get('folder_root', None):
    problems.append("config.folder_root must be set for dataset='image_folder' "
                    '(a directory with train/<class>/* and test/<class>/*)')
  pp = {**PP_DEFAULTS, **dict(config.get('pp', None) or {})}
  for key, allowed in PP_CHOICES.items():
    if pp[key] not in allowed:
      problems.append(f'config.pp.{key}={pp[key]!r} must be one of {allowed}')
  if pp['eval_mode'] in EVAL_MODES[:2] and pp['eval_resize'] < config.image_size:  # crop modes
    problems.append(f"config.pp.eval_resize={pp['eval_resize']} must be >= config.image_size="
                    f"{config.image_size} for eval_mode={pp['eval_mode']!r}")
  if not 0.0 < pp['area_min'] <= 1.0:
    problems.append(f"config.pp.area_min={pp['area_min']} must be in (0, 1]")
  for key in ('mixup_alpha', 'randaug_layers', 'randaug_magnitude'):
    if pp[key] < 0:
      problems.append(f'config.pp.{key}={pp[key]} must be >= 0')
  return problems + _mixup_problems(pp['mixup_alpha'], config.batch, shards)


def _mixup_problems(alpha: float, batch: int, shards: int) -> list[str]:
  """Mixup pairs examples 2k, 2k + 1 within a device: the per-device batch must be even."""
  if not (isinstance(batch, numbers.Integral) and batch > 0 and batch % shards == 0):
    return []  # reported by the batch checks
  per_device = batch // shards
  if alpha <= 0 or per_device % 2 == 0:
    return []
  return [f'config.pp.mixup_alpha={alpha} mixes examples in pairs (2k, 2k + 1) within a '
          f'device, so the per-device batch must be even: config.batch={batch} over {shards} '
          f'devices (processes x local devices) is {per_device} per device; make config.batch '
          f'a multiple of {2 * shards} or set config.pp.mixup_alpha=0']
