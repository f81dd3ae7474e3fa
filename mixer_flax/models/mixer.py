"""MLP-Mixer in Flax linen, mirroring the paper's reference code.

Parameter names and shapes are those of the released checkpoints
(`gs://mixer_models/...`), so official `.npz` files load key for key:

    stem/{kernel,bias}                               kernel (P, P, 3, C)
    MixerBlock_{i}/LayerNorm_0/{scale,bias}          (C,)
    MixerBlock_{i}/token_mixing/Dense_0/kernel       (S, D_S)
    MixerBlock_{i}/token_mixing/Dense_1/kernel       (D_S, S)
    MixerBlock_{i}/LayerNorm_1/{scale,bias}          (C,)
    MixerBlock_{i}/channel_mixing/Dense_0/kernel     (C, D_C)
    MixerBlock_{i}/channel_mixing/Dense_1/kernel     (D_C, C)
    pre_head_layer_norm/{scale,bias}                 (C,)
    head/{kernel,bias}                               (C, num_classes)

With default options the function is exactly the reference's (tanh GELU,
LayerNorm eps 1e-6, zero-initialised head, float32). The implementation avoids
materialised transposes: the stem is a patch reshape + matmul (identical to a
stride-P convolution) and token mixing contracts the token axis directly.

Options the reference lacks (all off by default): computation `dtype`,
stochastic depth (`stoch_depth`), `dropout`, `head_bias_init`.

Performance options (same parameters, same function):
  * `token_layout`: residual stream `(N, S, C)` or `(S, N, C)` (None: per
    backend); see `models/layout.py`.
  * `token_hidden`: token-mixing hidden activations with D_S first ('dm') or last
    ('md', lets bias + GELU become a GEMM epilogue); see `models/layout.py`.
  * `gelu_remat`: recompute GELUs in the backward pass (`layers.gelu`).
  * `inference_chunk`: at inference the batch runs in chunks of this many
    images (None: automatic on CPU, 0: off); see `models/chunking.py`.
  * `remat`: recompute each Mixer block's activations in the backward pass
    (`nn.remat`) instead of storing them: ~1/3 more FLOPs for far less
    activation memory (big models / big batches).

Stochastic depth drops each residual branch per example with probability
`stoch_depth * i / (num_blocks - 1)` in block i (0 in the first block, the full
rate in the last) and **rescales** kept branches by 1/(1 - rate), so inference
needs no correction (timm's convention; big_vision does not rescale).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixer_flax.models import chunking
from mixer_flax.models import layout as layout_lib
from mixer_flax.models.layers import Stem, TokenDense, gelu

Dtype = Any

# Layer norm epsilon of the reference code.
LN_EPS = 1e-6


class MlpBlock(nn.Module):
  """`Dense(mlp_dim) -> GELU -> Dense(width)` over the last axis, or the token axis.

  Attributes:
    mlp_dim: hidden width of the MLP (D_S or D_C).
    tokens: if True the MLP mixes along the token axis (token mixing), else
      along the last axis (channel mixing).
    dropout: dropout rate after the GELU and after the second layer.
    dtype: computation dtype (parameters stay float32).
    layout: 'nsc' or 'snc' (`models/layout.py`).
    hidden: token mixing's hidden layout, 'dm' or 'md' (`models/layout.py`).
    gelu_remat: recompute the GELU in the backward pass (`layers.gelu`).
  """

  mlp_dim: int
  tokens: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  layout: str = 'nsc'
  hidden: str = 'dm'
  gelu_remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps a stream `(N, S, C)` ('snc': `(S, N, C)`) to the same shape."""
    if self.tokens:
      width = x.shape[layout_lib.token_axis(self.layout)]
      md = self.hidden == 'md'
      dense0 = TokenDense(self.mlp_dim, dtype=self.dtype, layout=self.layout,
                          io='to_hidden' if md else 'stream', name='Dense_0')
      dense1 = TokenDense(width, dtype=self.dtype, layout=self.layout,
                          io='from_hidden' if md else 'stream', name='Dense_1')
    else:
      width = x.shape[-1]
      dense0 = nn.Dense(self.mlp_dim, dtype=self.dtype, name='Dense_0')
      dense1 = nn.Dense(width, dtype=self.dtype, name='Dense_1')
    y = gelu(dense0(x), remat=self.gelu_remat)
    y = nn.Dropout(self.dropout)(y, deterministic=not train)
    y = dense1(y).reshape(x.shape)
    return nn.Dropout(self.dropout)(y, deterministic=not train)


class DropPath(nn.Module):
  """Per-example stochastic depth on a residual branch (rescaled, see module doc)."""

  rate: float
  batch_axis: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Drops whole examples (along `batch_axis`) with probability `rate` when training."""
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    n = x.shape[self.batch_axis]
    # One draw per example, whatever the layout, so both layouts drop the same examples.
    mask = jax.random.bernoulli(self.make_rng('dropout'), keep, (n,))
    mask = mask.reshape([n if a == self.batch_axis else 1 for a in range(x.ndim)])
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class MixerBlock(nn.Module):
  """One Mixer layer: token mixing then channel mixing, each pre-LN and residual."""

  tokens_mlp_dim: int
  channels_mlp_dim: int
  drop_path: float = 0.0
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  layout: str = 'nsc'
  token_hidden: str = 'dm'
  gelu_remat: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps `(N, S, C)` ('snc': `(S, N, C)`) to the same shape.

    `train` is positional for `nn.remat`'s static_argnums.
    """
    drop = DropPath(self.drop_path, batch_axis=layout_lib.batch_axis(self.layout))
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='LayerNorm_0')(x)
    y = MlpBlock(self.tokens_mlp_dim, tokens=True, dropout=self.dropout, dtype=self.dtype,
                 layout=self.layout, hidden=self.token_hidden, gelu_remat=self.gelu_remat,
                 name='token_mixing')(y, train=train)
    x = x + drop(y, train=train)
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='LayerNorm_1')(x)
    y = MlpBlock(self.channels_mlp_dim, dropout=self.dropout, dtype=self.dtype,
                 gelu_remat=self.gelu_remat, name='channel_mixing')(y, train=train)
    return x + drop(y, train=train)


class MlpMixer(nn.Module):
  """The MLP-Mixer classifier.

  Attributes:
    num_classes: head width; 0 or None returns the pooled pre-logits `(N, C)`.
    patch_size: P, the side of the square patches.
    hidden_dim: C, the token width.
    num_blocks: number of Mixer blocks.
    tokens_mlp_dim: D_S, hidden width of the token-mixing MLP.
    channels_mlp_dim: D_C, hidden width of the channel-mixing MLP.
    stoch_depth: stochastic depth rate of the last block (0 disables).
    dropout: dropout rate inside the MLPs (0 disables).
    head_bias_init: initial head bias (e.g. -6.9 for sigmoid cross-entropy).
    dtype: computation dtype; parameters are always float32, logits float32.
    inference_chunk: images per chunk at inference (module doc); None = auto,
      0 = off. Performance only: parameters and outputs are unchanged.
    remat: rematerialise Mixer blocks in the backward pass (saves memory).
    token_layout: residual stream 'nsc' `(N, S, C)` or 'snc' `(S, N, C)`;
      None = per backend (`models/layout.py`). Performance only.
    token_hidden: token-mixing hidden layout 'dm' or 'md'; None = per backend
      (`models/layout.py`). Performance only.
    gelu_remat: recompute GELUs in the backward pass. Performance only.
  """

  num_classes: int | None
  patch_size: int
  hidden_dim: int
  num_blocks: int
  tokens_mlp_dim: int
  channels_mlp_dim: int
  stoch_depth: float = 0.0
  dropout: float = 0.0
  head_bias_init: float = 0.0
  dtype: Dtype = jnp.float32
  inference_chunk: int | None = None
  remat: bool = False
  token_layout: str | None = None
  token_hidden: str | None = None
  gelu_remat: bool = False

  def chunk_size(self, images_shape: tuple[int, ...]) -> int:
    """Images per inference chunk for inputs of `images_shape` (0: no chunking)."""
    return chunking.chunk_size(self, images_shape)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False,
               return_prelogits: bool = False):
    """Classifies images.

    Args:
      images: `(N, H, W, 3)` float images in [-1, 1].
      train: enables stochastic depth and dropout (needs a 'dropout' rng).
      return_prelogits: also return the pooled pre-logits.

    Returns:
      logits `(N, num_classes)` float32 (pre-logits `(N, C)` if num_classes is
      0/None), or the pair `(logits, pre_logits)` when `return_prelogits`.
    """
    if not train and not self.is_initializing():
      chunk = self.chunk_size(images.shape)
      if 0 < chunk < images.shape[0]:
        return chunking.apply_in_chunks(self, images, chunk, return_prelogits)
    block = nn.remat(MixerBlock, static_argnums=(2,)) if self.remat else MixerBlock
    layout = layout_lib.resolve(self.token_layout)
    hidden = layout_lib.resolve_hidden(self.token_hidden)
    # x is the residual stream in `layout`; layout_lib.to_nsc(x, layout) gives (N, S, C).
    x = Stem(self.hidden_dim, self.patch_size, dtype=self.dtype, layout=layout,
             name='stem')(images)
    for i in range(self.num_blocks):
      rate = self.stoch_depth * i / max(self.num_blocks - 1, 1)
      x = block(self.tokens_mlp_dim, self.channels_mlp_dim, drop_path=rate, dropout=self.dropout,
                dtype=self.dtype, layout=layout, token_hidden=hidden,
                gelu_remat=self.gelu_remat, name=f'MixerBlock_{i}')(x, train)
    x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='pre_head_layer_norm')(x)
    pre_logits = jnp.mean(x.astype(jnp.float32), axis=layout_lib.token_axis(layout))
    if not self.num_classes:
      return (pre_logits, pre_logits) if return_prelogits else pre_logits
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                      bias_init=nn.initializers.constant(self.head_bias_init),
                      dtype=self.dtype, name='head')(pre_logits.astype(self.dtype))
    logits = logits.astype(jnp.float32)
    return (logits, pre_logits) if return_prelogits else logits
