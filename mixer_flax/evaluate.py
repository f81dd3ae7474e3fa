"""Exact top-1/top-5 evaluation of a checkpoint on a tfds split or an image folder.

The library behind `scripts/evaluate.py` and `scripts/reproduce_tables.py`. It
builds a trainer-style config (`dataset`, `eval_split`, `image_size`, `pp`) and
reuses the trainer's pieces: `input_pipeline.get_eval_iterator` (every example
exactly once, padded and masked) and `train_step.make_eval_step` (pmapped over
all local devices, psum'd sums). Extras over the trainer's eval:

* `imagenet2012_real`: labels are multi-hot ReaL sets; examples whose ReaL set
  is empty are excluded (mask 0), as in the ReaL paper;
* the architecture is read off the checkpoint (`infer_architecture`), so any
  official or own `.npz` evaluates without naming the model.
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from mixer_flax import configs, models

# Datasets whose label sets may be empty for some examples (excluded from scoring).
MULTI_LABEL_DATASETS = ('imagenet2012_real',)
# tfds label feature of datasets whose labels are not in 'label'.
LABEL_KEYS = {'imagenet2012_real': 'real_label'}


def infer_architecture(params: dict[str, Any], *, image_size: int | None = None) -> dict[str, Any]:
  """Finds the `MODEL_CONFIGS` variant whose shapes match a parameter tree.

  Args:
    params: nested MlpMixer parameters (e.g. from `checkpoint.load_npz`).
    image_size: input side; default: the size at which the variant has exactly
      the checkpoint's token count.

  Returns:
    dict(model_name, num_classes, image_size, overrides) for `create_model`.
  """
  try:
    kernel = params['stem']['kernel']
    token0 = params['MixerBlock_0']['token_mixing']['Dense_0']['kernel']
    channel0 = params['MixerBlock_0']['channel_mixing']['Dense_0']['kernel']
  except KeyError as e:
    raise ValueError(f'Not an MlpMixer parameter tree (missing {e}); keys: {sorted(params)}.') \
        from e
  patch, hidden = kernel.shape[0], kernel.shape[-1]
  blocks = sum(1 for k in params if k.startswith('MixerBlock_'))
  num_tokens, d_s = token0.shape
  found = [(n, c) for n, c in models.MODEL_CONFIGS.items()
           if (c.patch_size, c.hidden_dim, c.num_blocks, c.channels_mlp_dim)
           == (patch, hidden, blocks, channel0.shape[1])]
  if not found:
    raise ValueError(f'No known Mixer variant has patch {patch}, C={hidden}, {blocks} blocks, '
                     f'D_C={channel0.shape[1]}; known: {", ".join(models.MODEL_CONFIGS)}.')
  name, cfg = found[0]
  side = int(round(np.sqrt(num_tokens))) * patch
  if image_size is not None and (image_size // patch) ** 2 != num_tokens:
    raise ValueError(f'The checkpoint has {num_tokens} tokens (a {side}px input for patch '
                     f'{patch}), but image_size={image_size} gives {(image_size // patch) ** 2}.')
  head = params.get('head')
  overrides = {} if d_s == cfg.tokens_mlp_dim else {'tokens_mlp_dim': int(d_s)}
  return dict(model_name=name, num_classes=int(head['kernel'].shape[1]) if head else 0,
              image_size=image_size or side, overrides=overrides)


def eval_config(*, dataset: str, split: str, image_size: int, model_name: str,
                eval_mode: str = 'resize_small_crop', eval_resize: int | None = None,
                batch: int = 256, data_dir: str | None = None, folder_root: str | None = None,
                num_classes: int | None = None) -> ml_collections.ConfigDict:
  """A trainer-style config for evaluation (schema: docs/design.md).

  `eval_resize` defaults to `configs.eval_resize_for(image_size)` (256 for 224).
  """
  return ml_collections.ConfigDict(dict(
      model_name=model_name, dataset=dataset, eval_split=split, train_split='train',
      data_dir=data_dir, folder_root=folder_root, manual_dir=None, num_classes=num_classes,
      image_key='image', label_key=LABEL_KEYS.get(dataset, 'label'),
      image_size=image_size, batch_eval=batch, batch=batch, prefetch=0, tf_threads=0,
      shuffle_buffer=1, loss='softmax_xent', label_smoothing=0.0,
      pp=dict(crop='resize', area_min=0.05, flip=False, randaug_layers=0, randaug_magnitude=0,
              mixup_alpha=0.0, eval_mode=eval_mode,
              eval_resize=eval_resize or configs.eval_resize_for(image_size))))


def evaluate_params(config: ml_collections.ConfigDict, model: Any, params: Any, *,
                    progress: bool = False) -> dict[str, float]:
  """Top-1/top-5 accuracy of `model` with `params` on `config.dataset[config.eval_split]`.

  Args:
    config: see `eval_config`.
    model: the MlpMixer module.
    params: unreplicated parameters.
    progress: show a tqdm progress bar (batches).

  Returns:
    dict(top1, top5, loss, count): accuracies in [0, 1], mean loss, number of
    scored examples.
  """
  import jax
  import tqdm

  from mixer_flax import input_pipeline, train_step, train_utils

  devices = jax.local_device_count()
  if config.batch_eval % devices:  # the eval batch must split evenly over the devices
    config = ml_collections.ConfigDict(config.to_dict())
    config.batch_eval = -(-config.batch_eval // devices) * devices
  eval_step = train_step.make_eval_step(model=model, config=config)
  params = train_utils.replicate(params)
  multi_label = config.dataset in MULTI_LABEL_DATASETS
  totals: dict[str, float] = {}
  batches = input_pipeline.get_eval_iterator(config)
  total = None
  if progress:  # ceil(examples / global batch) batches (every process yields as many)
    total = -(-input_pipeline.get_dataset_info(config).num_eval_examples // config.batch_eval)
  for batch in tqdm.tqdm(batches, desc=f'{config.dataset}[{config.eval_split}]', unit='batch',
                         total=total, disable=not progress):
    if multi_label:  # ReaL: examples without any real label do not count.
      batch = dict(batch)
      batch['mask'] = np.asarray(batch['mask']) * (np.asarray(batch['labels']).sum(-1) > 0)
    sums = train_utils.unreplicate(eval_step(params, batch))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
  count = totals.get('count', 0.0)
  if not count:
    raise ValueError(f'No examples were scored in {config.dataset}[{config.eval_split}].')
  return dict(top1=totals['correct'] / count, top5=totals['correct_top5'] / count,
              loss=totals['loss'] / count, count=count)


def load_model(path: str, *, image_size: int | None = None, num_classes: int | None = None):
  """Loads an `.npz` and builds the matching model.

  Returns:
    `(model, params, arch)` with `arch` from `infer_architecture`.
  """
  from mixer_flax import checkpoint

  params = checkpoint.load_npz(path)
  arch = infer_architecture(params, image_size=image_size)
  if num_classes is not None and num_classes != arch['num_classes']:
    raise ValueError(f'{path} has a {arch["num_classes"]}-class head but the dataset has '
                     f'{num_classes} classes; fine-tune it first (mixer_flax.main).')
  model = models.create_model(arch['model_name'], num_classes=arch['num_classes'],
                              **arch['overrides'])
  return model, params, arch
