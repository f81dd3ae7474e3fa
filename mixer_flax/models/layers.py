"""Layers of `MlpMixer` that depend on the layout (patch stem, token dense), and its GELU.

Their parameters are those of the reference's `nn.Conv` stem and of `nn.Dense`
on transposed tokens, so official checkpoints load key for key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixer_flax.models import layout as layout_lib

Dtype = Any


def gelu(x: jax.Array, *, remat: bool = False) -> jax.Array:
  """The tanh-approximated GELU of the reference (`flax.linen.gelu`).

  `remat`: the backward pass recomputes it from its input (`jax.checkpoint`) instead of
  storing its intermediates, so the GEMM before it can also output that input (cuBLASLt
  BIAS_GELU_AUX); the same arithmetic either way.
  """
  fn = functools.partial(nn.gelu, approximate=True)
  return jax.checkpoint(fn)(x) if remat else fn(x)


class TokenDense(nn.Module):
  """A dense layer over the token axis of `(N, S, C)` (or 'snc': `(S, N, C)`) inputs.

  Its parameters are those of `nn.Dense` applied to the transposed input
  (`kernel (S, features)`, `bias (features,)`), so checkpoints stay
  key-for-key compatible, but no transpose is materialised.

  `io`: 'stream' maps the stream layout to itself; 'to_hidden' maps the stream to the
  'md' hidden (`layout.to_hidden`), 'from_hidden' maps it back to the stream's shape
  (2-D `(S, N*C)` for 'snc').
  """

  features: int
  dtype: Dtype = jnp.float32
  layout: str = 'nsc'
  io: str = 'stream'
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps `(N, S, C)` to `(N, features, C)` ('snc': `(S, N, C)` to `(features, N, C)`).

    With `io='to_hidden'` the output is `(N, C, features)` ('snc': `(N*C, features)`); with
    `io='from_hidden'` the input is that hidden and the output `(N, features, C)`
    ('snc': `(features, N*C)`).
    """
    tokens = x.shape[-1 if self.io == 'from_hidden' else layout_lib.token_axis(self.layout)]
    kernel = self.param('kernel', self.kernel_init, (tokens, self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if self.io == 'to_hidden':
      return layout_lib.to_hidden(x, kernel, self.layout) + bias
    if self.io == 'from_hidden':
      return layout_lib.from_hidden(x, kernel, self.layout) + bias[:, None]
    y = layout_lib.token_matmul(x, kernel, self.layout)
    return y + (bias[:, None, None] if self.layout == 'snc' else bias[:, None])


class Stem(nn.Module):
  """Per-patch linear embedding: a stride-P, kernel-P convolution as a matmul.

  Parameters are those of `nn.Conv(C, (P, P), strides=(P, P))`:
  `kernel (P, P, 3, C)`, `bias (C,)`. Tokens come out row-major.
  """

  hidden_dim: int
  patch_size: int
  dtype: Dtype = jnp.float32
  layout: str = 'nsc'

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """Maps images `(N, H, W, 3)` to tokens `(N, S, C)` ('snc': `(S, N, C)`), S = HW/P^2."""
    n, h, w, c = images.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f'Image size {h}x{w} is not divisible by patch_size={p}.')
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (p, p, c, self.hidden_dim),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.hidden_dim,), jnp.float32)
    images, kernel, bias = nn.dtypes.promote_dtype(images, kernel, bias, dtype=self.dtype)
    patches = layout_lib.patches(images, p, self.layout)
    return patches @ kernel.reshape(p * p * c, self.hidden_dim) + bias
