"""Section 3.4 of the paper: Mixer is invariant to a fixed patch + pixel permutation.

Three versions of a dataset are compared (paper Fig. 4):

* `original` images;
* `patch_pixel`: one fixed permutation `pi` of the patch order and one fixed
  permutation `sigma` of the pixel positions inside every patch (the same for
  all patches), applied to every image;
* `global_pixel`: one fixed permutation of all pixel positions of the image.

Why Mixer does not care about `patch_pixel`: the stem is one linear map per
patch, so permuting the pixels inside each patch is undone by permuting the
rows of the stem kernel (`K'_q = K_sigma(q)`); the tokens then come out in the
order `pi`. Channel mixing, LayerNorm and the final mean pooling treat tokens
independently or symmetrically, and token mixing is undone by permuting the
token rows of its first kernel (`W0'_s = W0_pi(s)`) and the token columns of
its second kernel and bias (`W1'_{:,s} = W1_{:,pi(s)}`). So
`permute_params(params)` on permuted images computes exactly the original
function of the original images: both training problems are the same up to a
relabelling of the weights (and the i.i.d. initialisation is invariant to it).
A global pixel shuffle mixes pixels across patches and has no such equivalent.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from mixer_flax import models

VARIANTS = ('original', 'patch_pixel', 'global_pixel')


@dataclasses.dataclass(frozen=True)
class Permutation:
  """A fixed image permutation for `image_size` x `image_size` images.

  Attributes:
    kind: one of `VARIANTS`.
    image_size: image side H = W.
    patch_size: P.
    token_perm: `(S,)` new token s holds old token `token_perm[s]` (patch_pixel).
    pixel_perm: `(P*P,)` new in-patch position q holds old position
      `pixel_perm[q]` (patch_pixel), or `(H*W,)` for global_pixel.
  """

  kind: str
  image_size: int
  patch_size: int
  token_perm: np.ndarray
  pixel_perm: np.ndarray


def make_permutation(kind: str, *, image_size: int, patch_size: int,
                     seed: int = 0) -> Permutation:
  """Draws the fixed permutation of one experiment variant."""
  if kind not in VARIANTS:
    raise ValueError(f'Unknown permutation kind {kind!r}; use one of {VARIANTS}.')
  if image_size % patch_size:
    raise ValueError(f'image_size={image_size} is not a multiple of patch_size={patch_size}.')
  rng = np.random.default_rng(seed)
  num_tokens = (image_size // patch_size) ** 2
  if kind == 'original':
    tok, pix = np.arange(num_tokens), np.arange(patch_size**2)
  elif kind == 'patch_pixel':
    tok, pix = rng.permutation(num_tokens), rng.permutation(patch_size**2)
  else:
    tok, pix = np.arange(num_tokens), rng.permutation(image_size**2)
  return Permutation(kind, image_size, patch_size, tok, pix)


def _to_patches(images: np.ndarray, p: int) -> np.ndarray:
  n, h, w, c = images.shape
  x = images.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, (h // p) * (w // p), p * p, c)


def _from_patches(patches: np.ndarray, h: int, p: int) -> np.ndarray:
  n, _, _, c = patches.shape
  g = h // p
  x = patches.reshape(n, g, g, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h, h, c)


def apply(perm: Permutation, images: np.ndarray) -> np.ndarray:
  """Permutes images `(N, H, W, C)` (channels of a pixel stay together)."""
  images = np.asarray(images)
  n, h, w, c = images.shape
  if (h, w) != (perm.image_size, perm.image_size):
    raise ValueError(f'Images are {h}x{w} but the permutation is for '
                     f'{perm.image_size}x{perm.image_size}.')
  if perm.kind == 'global_pixel':
    return images.reshape(n, h * w, c)[:, perm.pixel_perm].reshape(n, h, w, c)
  patches = _to_patches(images, perm.patch_size)[:, perm.token_perm][:, :, perm.pixel_perm]
  return _from_patches(patches, h, perm.patch_size)


def permute_params(perm: Permutation, params: dict[str, Any]) -> dict[str, Any]:
  """Weights that compute on `apply(perm, x)` exactly what `params` compute on `x`.

  Args:
    perm: a 'patch_pixel' (or 'original') permutation.
    params: MlpMixer parameters (nested dict, official names).

  Returns:
    A new nested dict of numpy arrays: stem kernel rows permuted by
    `pixel_perm`, token-mixing kernels/bias permuted by `token_perm`.
  """
  if perm.kind == 'global_pixel':
    raise ValueError('A global pixel permutation has no equivalent Mixer weights.')
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in params.items()}
  p = perm.patch_size
  kernel = np.asarray(params['stem']['kernel'])  # (P, P, 3, C)
  flat = kernel.reshape(p * p, *kernel.shape[2:])[perm.pixel_perm]
  out['stem'] = {**params['stem'], 'kernel': flat.reshape(kernel.shape)}
  tok = perm.token_perm
  for name, block in params.items():
    if not name.startswith('MixerBlock_'):
      continue
    tm = block['token_mixing']
    d0, d1 = tm['Dense_0'], tm['Dense_1']
    new_tm = {'Dense_0': {'kernel': np.asarray(d0['kernel'])[tok], 'bias': np.asarray(d0['bias'])},
              'Dense_1': {'kernel': np.asarray(d1['kernel'])[:, tok],
                          'bias': np.asarray(d1['bias'])[tok]}}
    out[name] = {**block, 'token_mixing': new_tm}
  return out


# ---------------------------------------------------------------------------
# The experiment: the trainer on image folders of (permuted) digits.

def write_digits_folder(root: str, perm: Permutation) -> str:
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

  from mixer_flax.datasets.sklearn_digits import digits_split

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
  images = apply(perm, images)[..., 0]
  for split, indices in digits_split().items():
    for i in indices:
      d = os.path.join(out, split, str(digits.target[i]))
      os.makedirs(d, exist_ok=True)
      Image.fromarray(images[i]).save(os.path.join(d, f'{i:04d}.png'))
  with open(done, 'w') as f:
    f.write(f'{perm}\n')
  return out


def experiment_config(base: ml_collections.ConfigDict, *, kind: str, data_root: str,
                      seed: int = 0) -> ml_collections.ConfigDict:
  """The trainer config for one variant: `base` (e.g. experiments/digits.py) on its folder.

  Train and eval preprocessing become a plain resize to the stored size (an
  identity), without flips or crops, so the fixed permutation is what the model
  sees. Evaluation and checkpointing happen once, at the end.
  """
  config = ml_collections.ConfigDict(base.to_dict())
  perm = make_permutation(kind, image_size=config.image_size, patch_size=_patch_size(config),
                          seed=seed)
  config.dataset = 'image_folder'
  config.folder_root = write_digits_folder(data_root, perm)
  config.train_split, config.eval_split = 'train', 'test'
  config.pp.update(dict(crop='resize', flip=False, randaug_layers=0, mixup_alpha=0.0,
                        eval_mode='resize', eval_resize=config.image_size))
  config.eval_every = config.checkpoint_every = config.total_steps
  return config


def run_experiment(base: ml_collections.ConfigDict, *, workdir: str,
                   kinds: tuple[str, ...] = VARIANTS) -> dict[str, float]:
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
  perm = make_permutation('patch_pixel', image_size=base.image_size,
                          patch_size=_patch_size(configs['original']))
  overrides = {k: v for k, v in configs['original'].model.to_dict().items() if v is not None}
  model = models.create_model(base.model_name, num_classes=10, **overrides)
  x = np.zeros((1, base.image_size, base.image_size, 3), np.float32)
  init = jax.tree_util.tree_map(np.asarray, jax.jit(model.init)(
      jax.random.PRNGKey(base.seed), x)['params'])
  starts = {'original': init, 'patch_pixel': permute_params(perm, init)}
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
                                permute_params(perm, finals['original']), finals['patch_pixel'])
  out['max_abs_weight_diff'] = max(jax.tree_util.tree_leaves(diff))
  images = _digits_test_images(base.image_size)
  preds = [np.asarray(model.apply({'params': finals['original']}, images)).argmax(-1),
           np.asarray(model.apply({'params': finals['patch_pixel']}, apply(perm, images)))
           .argmax(-1)]
  out['prediction_agreement'] = float(np.mean(preds[0] == preds[1]))
  return out


def _patch_size(config: ml_collections.ConfigDict) -> int:
  return config.model.get('patch_size', None) or models.get_config(config.model_name).patch_size


def _digits_test_images(image_size: int) -> np.ndarray:
  """The digits test split as the folders store it, float32 in [-1, 1], `(360, H, H, 3)`."""
  from sklearn.datasets import load_digits

  from mixer_flax.datasets.sklearn_digits import digits_split

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
