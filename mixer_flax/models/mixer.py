"""MLP-Mixer (Tolstikhin et al., 2021), Figure 1, as the paper's reference code has it.

Parameter names and shapes are those of the released checkpoints, so official `.npz` files
load key for key (S tokens, C channels, D_S / D_C the token / channel MLP widths):

    stem/{kernel (P, P, 3, C), bias}               per-patch linear embedding (stride-P conv)
    MixerBlock_{i}/LayerNorm_0, token_mixing/Dense_0 (S, D_S), Dense_1 (D_S, S)
    MixerBlock_{i}/LayerNorm_1, channel_mixing/Dense_0 (C, D_C), Dense_1 (D_C, C)
    pre_head_layer_norm, head (C, num_classes)     zero-initialised head

tanh-approximated GELU (`nn.gelu`), LayerNorm epsilon 1e-6. Additions of ours are marked
`# ours`; with their defaults the function is the reference's: computation `dtype`,
`stoch_depth` (as big_vision), `dropout`, `head_bias_init`, `remat`, and `formulation` (the
same function, faster: formulations.py; the default picks one per backend).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixer_flax.models import formulations
from mixer_flax.models.common import LN_EPS, PAPER, Dtype, drop_path


class MlpBlock(nn.Module):
  """Dense(mlp_dim) -> GELU -> Dense(back to the input width), over the last axis."""

  mlp_dim: int
  dropout: float = 0.0  # ours
  dtype: Dtype = jnp.float32  # ours

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps `(..., width)` to `(..., width)`."""
    y = nn.Dense(self.mlp_dim, dtype=self.dtype)(x)
    y = nn.gelu(y)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)  # ours
    y = nn.Dense(x.shape[-1], dtype=self.dtype)(y)
    return nn.Dropout(self.dropout, deterministic=not train)(y)  # ours


class MixerBlock(nn.Module):
  """One Mixer layer: token mixing, then channel mixing, each after a LayerNorm, residual."""

  tokens_mlp_dim: int
  channels_mlp_dim: int
  drop_rate: float = 0.0  # ours: stochastic depth of both branches
  dropout: float = 0.0  # ours
  dtype: Dtype = jnp.float32  # ours

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps tokens `(N, S, C)` to `(N, S, C)`; `train` positional for `nn.remat`."""
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)(x)
    y = jnp.swapaxes(y, 1, 2)
    y = MlpBlock(self.tokens_mlp_dim, self.dropout, self.dtype, name='token_mixing')(
        y, train=train)
    y = jnp.swapaxes(y, 1, 2)
    x = x + drop_path(self, y, self.drop_rate, train=train)
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype)(x)
    y = MlpBlock(self.channels_mlp_dim, self.dropout, self.dtype, name='channel_mixing')(
        y, train=train)
    return x + drop_path(self, y, self.drop_rate, train=train)


class MlpMixer(nn.Module):
  """The MLP-Mixer classifier.

  Attributes:
    num_classes: head width; 0 or None: no head, the pre-logits `(N, C)` are returned.
    patch_size: P, the side of the square patches.
    hidden_dim: C.
    num_blocks: number of Mixer blocks.
    tokens_mlp_dim: D_S.
    channels_mlp_dim: D_C.
    stoch_depth: ours: stochastic depth rate of the last block, growing linearly from 0 in
      the first (`drop_rate`).
    dropout: ours: dropout after each MLP's GELU and output.
    head_bias_init: ours: initial head bias (e.g. -6.9 for sigmoid cross-entropy).
    dtype: ours: computation dtype; parameters, pre-logits and logits stay float32.
    remat: ours: recompute each block in the backward pass instead of storing its
      activations (docs/performance.md).
    formulation: ours: None runs the backend's default formulation of this function
      (mixer_flax/backends.py), 'paper' this module's code, another name that one of
      `formulations.FORMULATIONS`.
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
  remat: bool = False
  formulation: str | None = None

  def drop_rate(self, block: int) -> float:
    """Stochastic depth rate of `block`: big_vision's `stoch_depth * i / max(L - 1, 1)`."""
    return self.stoch_depth * block / max(self.num_blocks - 1, 1)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False,
               return_prelogits: bool = False) -> Any:
    """Classifies images `(N, H, W, 3)` in [-1, 1]; H and W multiples of P.

    `train` enables stochastic depth and dropout (they need a 'dropout' rng). Returns
    logits `(N, num_classes)` float32 (the pre-logits without a head), or the pair
    `(logits, pre_logits)` with `return_prelogits`.
    """
    if images.shape[1] % self.patch_size or images.shape[2] % self.patch_size:
      raise ValueError(f'Image size {images.shape[1]}x{images.shape[2]} is not divisible by '
                       f'patch_size={self.patch_size}.')
    if self.formulation != PAPER:  # ours: the same function, faster
      return formulations.apply(self, images, train=train, return_prelogits=return_prelogits)
    p = self.patch_size
    x = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), dtype=self.dtype, name='stem')(images)
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h * w, c))
    block = nn.remat(MixerBlock, static_argnums=(2,)) if self.remat else MixerBlock  # ours
    for i in range(self.num_blocks):
      x = block(self.tokens_mlp_dim, self.channels_mlp_dim, self.drop_rate(i), self.dropout,
                self.dtype, name=f'MixerBlock_{i}')(x, train)
    x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='pre_head_layer_norm')(x)
    return self.head(jnp.mean(x.astype(jnp.float32), axis=1), return_prelogits)

  def head(self, pre_logits: jax.Array, return_prelogits: bool) -> Any:
    """The zero-initialised `head` on the pooled pre-logits `(N, C)` (called by `__call__`)."""
    if not self.num_classes:
      return (pre_logits, pre_logits) if return_prelogits else pre_logits
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros,
                      bias_init=nn.initializers.constant(self.head_bias_init),  # ours
                      dtype=self.dtype, name='head')(pre_logits.astype(self.dtype))
    logits = logits.astype(jnp.float32)
    return (logits, pre_logits) if return_prelogits else logits
