"""CPU inference chunking for `MlpMixer` (performance only: same parameters, same outputs).

At inference (`train=False`) the batch is processed in chunks of
`inference_chunk` images (`jax.lax.map`), so activations stay cache-sized and
XLA's per-call scratch buffer (freshly page-faulted on every call with glibc
malloc) shrinks. `None` (default) picks the chunk automatically: on the CPU
backend the largest power of two whose biggest activation (S x D_C values)
fits in `CHUNK_BYTES`; elsewhere (GPU/TPU want big batches) no chunking.
0 disables. Mixer-B/16 float32 at batch 32: XLA scratch 459 -> 41 MiB;
measured effect in docs/performance.md.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# Budget for the largest activation of one chunk (the channel-MLP hidden layer,
# S x D_C values per image) -- about the size of a server CPU's last-level cache.
CHUNK_BYTES = 32 * 2 ** 20


def chunk_size(model: Any, images_shape: tuple[int, ...]) -> int:
  """Images per inference chunk of `model` (an `MlpMixer`) for `images_shape` (0: none)."""
  if model.inference_chunk is not None:
    return max(int(model.inference_chunk), 0)
  if jax.default_backend() != 'cpu':
    return 0
  _, h, w, _ = images_shape
  tokens = (h // model.patch_size) * (w // model.patch_size)
  widest = max(tokens * model.channels_mlp_dim, model.tokens_mlp_dim * model.hidden_dim)
  fit = CHUNK_BYTES // (widest * jnp.dtype(model.dtype).itemsize)
  return 1 << (int(fit).bit_length() - 1) if fit >= 1 else 1


def apply_in_chunks(model: Any, images: jax.Array, chunk: int, return_prelogits: bool):
  """Inference of bound `model` on `images (N, H, W, 3)`, `chunk` images at a time.

  Returns the same outputs as one unchunked call (logits, or the pair with pre-logits).
  """
  inner = model.clone(parent=None, inference_chunk=0)
  variables = model.variables

  def apply(x):
    return inner.apply(variables, x, return_prelogits=return_prelogits)

  n = images.shape[0]
  full = n - n % chunk
  outs = jax.lax.map(apply, images[:full].reshape((full // chunk, chunk) + images.shape[1:]))
  outs = jax.tree_util.tree_map(lambda o: o.reshape((full,) + o.shape[2:]), outs)
  if full < n:
    rest = apply(images[full:])
    outs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), outs, rest)
  return outs
