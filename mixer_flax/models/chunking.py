"""Inference in cache-sized chunks of the batch (performance only: same outputs).

`MlpMixer` with the default formulation (None) runs inference `k` images at a time
(`jax.lax.map`) where the backend table (mixer_flax/backends.py) gives an activation budget:
`k` is the largest power of two whose widest activation (S x D_C or D_S x C values per
image) fits it. Activations then stay in the cache and XLA's per-call scratch stays small
instead of growing with the batch (docs/performance.md). Training is never chunked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from mixer_flax import backends


def chunk_size(model: Any, images_shape: tuple[int, ...], budget: int | None = None) -> int:
  """Images per inference chunk of `model` (an `MlpMixer`) for `images_shape` (0: none).

  `budget`: bytes per chunk's widest activation (default: the backend table's).
  """
  budget = backends.current().inference_chunk_bytes if budget is None else budget
  if budget <= 0:
    return 0
  _, h, w, _ = images_shape
  tokens = (h // model.patch_size) * (w // model.patch_size)
  widest = max(tokens * model.channels_mlp_dim, model.tokens_mlp_dim * model.hidden_dim)
  fit = budget // (widest * jnp.dtype(model.dtype).itemsize)
  return 1 << (int(fit).bit_length() - 1) if fit >= 1 else 1


def apply_in_chunks(model: Any, variables: Any, images: jax.Array, *, chunk: int,
                    return_prelogits: bool) -> Any:
  """`model.apply(variables, images)` at inference, `chunk` images at a time.

  `model`: an unbound `MlpMixer` that does not chunk itself. Returns the same outputs as one
  call on the whole batch (logits, or the pair with pre-logits).
  """
  def apply(x):
    return model.apply(variables, x, return_prelogits=return_prelogits)

  n = images.shape[0]
  full = n - n % chunk
  outs = jax.lax.map(apply, images[:full].reshape((full // chunk, chunk) + images.shape[1:]))
  outs = jax.tree_util.tree_map(lambda o: o.reshape((full,) + o.shape[2:]), outs)
  if full < n:
    rest = apply(images[full:])
    outs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), outs, rest)
  return outs
