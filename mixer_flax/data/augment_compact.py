"""Equalize's histograms for a batch, counted only for the examples that drew equalize.

RandAugment's 'compact' mode (augment.py) draws each layer's ops for the whole batch
first. Only the ~1/16 of examples that drew equalize need a histogram, the costliest
per-pixel step on accelerators (a scatter of every pixel). Their images are gathered
into a group of static size `capacity`, counted, and put back; when more examples
than that drew equalize (lax.cond), every image is counted. Exact either way; the
other examples get zero histograms (equalize_lut: identity, and they do not use it).
Cost of the exactness: one lax.cond per layer, which XLA on GPUs runs by copying the
predicate to the host (a sync inside the step unless captured in a command buffer);
on TPUs it stays on the device. The whole-step cost is in docs/performance.md.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mixer_flax.data import augment_ops as ops


def capacity(batch: int) -> int:
  """Group size: mean + 6 standard deviations of Binomial(batch, 1/16), + 1, at most batch."""
  mean = batch / 16.0
  return min(batch, math.ceil(mean + 6.0 * math.sqrt(mean) + 1.0))


def needed_histograms(images: jax.Array, needed: jax.Array, *, method: str = 'scatter',
                      size: int | None = None) -> jax.Array:
  """Histograms int32 [B, 3, 256] of uint8 images [B, H, W, 3] where `needed` [B], else 0.

  size: the group size (default capacity(B)); with size >= B every image is counted.
  """
  b = images.shape[0]
  size = capacity(b) if size is None else size
  count = jax.vmap(lambda x: ops.histogram(x, method))

  def every(x):
    return jnp.where(needed[:, None, None], count(x), 0)

  if size >= b:
    return every(images)

  def grouped(x):
    index = jnp.nonzero(needed, size=size, fill_value=b)[0]  # b = a free slot, dropped
    hist = count(x[jnp.minimum(index, b - 1)])
    return jnp.zeros((b, 3, 256), jnp.int32).at[index].set(hist, mode='drop')

  return jax.lax.cond(jnp.sum(needed) <= size, grouped, every, images)
