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
from typing import Any

import numpy as np

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
