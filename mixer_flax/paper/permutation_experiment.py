"""Section 3.4 of the paper as an experiment: the trainer on (permuted) digits image folders.

`run_experiment` trains one model per variant of `permutation.VARIANTS`;
`run_same_start` checks that the patch + pixel permutation is a relabelling of
the weights (identical runs up to float rounding).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from mixer_flax import fileio, models
from mixer_flax.paper import permutation


def write_digits_folder(root: str, perm: permutation.Permutation) -> str:
  """Writes sklearn's digits, upscaled and permuted, as an image folder.

  The 8x8 digits (uint8 `round(v * 255 / 16)`, the fixed train/test split of
  the `sklearn_digits` tfds dataset) are upscaled to `perm.image_size` by pixel
  repetition (nearest neighbour), permuted and saved as grey PNGs in
  `root/<kind>/{train,test}/<digit>/<index>.png`. Existing complete folders are
  reused.

  Returns:
    the folder root `root/<kind>`.
  """
  from PIL import Image
  from sklearn.datasets import load_digits

  from mixer_flax.data.datasets.sklearn_digits import digits_split

  out = os.path.join(root, perm.kind)
  done = os.path.join(out, 'COMPLETE')
  if os.path.exists(done):
    return out
  if perm.image_size % 8:
    raise ValueError(f'image_size={perm.image_size} must be a multiple of 8 (digits are 8x8).')
  digits = load_digits()
  scale = perm.image_size // 8
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)[..., None]
  images = permutation.apply(perm, images)[..., 0]
  for split, indices in digits_split().items():
    for i in indices:
      d = os.path.join(out, split, str(digits.target[i]))
      os.makedirs(d, exist_ok=True)
      Image.fromarray(images[i]).save(os.path.join(d, f'{i:04d}.png'))
  fileio.write_atomic(done, f'{perm}\n', what='the permuted digits marker')
  return out


def experiment_config(base: ml_collections.ConfigDict, *, kind: str, data_root: str,
                      seed: int = 0) -> ml_collections.ConfigDict:
  """The trainer config for one variant: `base` (e.g. experiments/digits.py) on its folder.

  Train and eval preprocessing become a plain resize to the stored size (an
  identity), without flips or crops, so the fixed permutation is what the model
  sees. Evaluation and checkpointing happen once, at the end.
  """
  config = ml_collections.ConfigDict(base.to_dict())
  perm = permutation.make_permutation(kind, image_size=config.image_size,
                                      patch_size=_patch_size(config), seed=seed)
  config.dataset = 'image_folder'
  config.folder_root = write_digits_folder(data_root, perm)
  config.train_split, config.eval_split = 'train', 'test'
  config.pp.update(dict(crop='resize', flip=False, randaug_layers=0, mixup_alpha=0.0,
                        eval_mode='resize', eval_resize=config.image_size))
  config.evals.eval.every = config.checkpoint_every = config.total_steps
  return config


def run_experiment(base: ml_collections.ConfigDict, *, workdir: str,
                   kinds: tuple[str, ...] = permutation.VARIANTS) -> dict[str, float]:
  """Trains `base`'s model on each variant with the trainer; returns test top-1 per variant."""
  from mixer_flax import train

  results = {}
  for kind in kinds:
    config = experiment_config(base, kind=kind, data_root=os.path.join(workdir, 'data'))
    # One workdir per step count: the trainer resumes from a workdir's checkpoints.
    result = train.train_and_evaluate(
        config, os.path.join(workdir, f'{kind}_{config.total_steps}steps'))
    if result.get('preempted') or 'eval_accuracy' not in result:
      raise RuntimeError(f'Training on {kind!r} stopped before its final evaluation (preempted?);'
                         ' rerun the same command to resume.')
    results[kind] = float(result['eval_accuracy'])
  return results


def run_same_start(base: ml_collections.ConfigDict, *, workdir: str) -> dict[str, float]:
  """Trains original and patch_pixel from one initialisation, relabelled for the latter.

  The original run starts from weights `W0`, the permuted run from
  `permute_params(W0)`; data order and preprocessing are identical, and Adam,
  weight decay and global-norm clipping commute with the relabelling, so the two
  runs are the same computation up to float rounding.

  Returns:
    dict(original_same_start, patch_pixel_same_start): test top-1;
    max_abs_weight_diff: max |permute_params(final_original) - final_patch_pixel|;
    prediction_agreement: fraction of test images both final models label alike.
  """
  import jax

  from mixer_flax import checkpoint, train

  data_root = os.path.join(workdir, 'data')
  configs = {k: experiment_config(base, kind=k, data_root=data_root)
             for k in ('original', 'patch_pixel')}
  perm = permutation.make_permutation('patch_pixel', image_size=base.image_size,
                          patch_size=_patch_size(configs['original']))
  overrides = {k: v for k, v in configs['original'].model.to_dict().items() if v is not None}
  model = models.create_model(base.model_name, num_classes=10, **overrides)
  x = np.zeros((1, base.image_size, base.image_size, 3), np.float32)
  init = jax.tree_util.tree_map(np.asarray, jax.jit(model.init)(
      jax.random.PRNGKey(base.seed), x)['params'])
  starts = {'original': init, 'patch_pixel': permutation.permute_params(perm, init)}
  finals, out = {}, {}
  for kind, config in configs.items():
    run_dir = os.path.join(workdir, f'{kind}_same_start_{config.total_steps}steps')
    os.makedirs(run_dir, exist_ok=True)
    config.pretrained_path = os.path.join(run_dir, 'start.npz')
    config.pretrained_image_size = config.image_size
    checkpoint.save_npz(config.pretrained_path, starts[kind])
    result = train.train_and_evaluate(config, run_dir)
    out[f'{kind}_same_start'] = float(result['eval_accuracy'])
    finals[kind] = checkpoint.load_npz(os.path.join(run_dir, 'final.npz'))
  diff = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()),
                                permutation.permute_params(perm, finals['original']),
                                finals['patch_pixel'])
  out['max_abs_weight_diff'] = max(jax.tree_util.tree_leaves(diff))
  images = _digits_test_images(base.image_size)
  preds = [np.asarray(model.apply({'params': finals['original']}, images)).argmax(-1),
           np.asarray(model.apply({'params': finals['patch_pixel']},
                                  permutation.apply(perm, images))).argmax(-1)]
  out['prediction_agreement'] = float(np.mean(preds[0] == preds[1]))
  return out


def _patch_size(config: ml_collections.ConfigDict) -> int:
  return config.model.get('patch_size', None) or models.get_config(config.model_name).patch_size


def _digits_test_images(image_size: int) -> np.ndarray:
  """The digits test split as the folders store it, float32 in [-1, 1], `(360, H, H, 3)`."""
  from sklearn.datasets import load_digits

  from mixer_flax.data.datasets.sklearn_digits import digits_split

  scale = image_size // 8
  images = np.round(load_digits().images[digits_split()['test']] * (255.0 / 16.0))
  images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)[..., None].repeat(3, -1)
  return ((images - 127.5) / 127.5).astype(np.float32)


def markdown(results: dict[str, float], *, steps: int, model_name: str) -> str:
  """The test accuracies (and the same-start check, if run) as a Markdown table."""
  what = {'original': 'original images',
          'patch_pixel': 'fixed patch order + within-patch pixel permutation',
          'global_pixel': 'fixed global pixel permutation',
          'original_same_start': 'original images, start W0',
          'patch_pixel_same_start': 'patch + pixel permutation, start permute_params(W0)'}
  lines = [f'{model_name} on sklearn digits (16x16), {steps} steps, test split (360 images).', '',
           '| input | test top-1 |', '|---|---|']
  lines += [f'| {what[k]} | {100 * v:.2f}% |' for k, v in results.items() if k in what]
  if 'max_abs_weight_diff' in results:
    lines += ['', f'Same start: final weights differ by at most '
              f'{results["max_abs_weight_diff"]:.2e} after undoing the relabelling; the two '
              f'models label {100 * results["prediction_agreement"]:.2f}% of the test images '
              'alike.']
  return '\n'.join(lines)
