"""Faster formulations of the paper's `MlpMixer` (mixer.py): same parameters, same function.

`MlpMixer(formulation=NAME)` runs NAME; None runs the backend's default (mixer_flax/backends.py)
and, where that table says so, inference in cache-sized chunks (chunking.py). A formulation
builds the paper's modules under the model (`stem`, `MixerBlock_{i}/{LayerNorm_0, token_mixing,
LayerNorm_1, channel_mixing}`, `pre_head_layer_norm`, `head`), so checkpoints are the same;
tests/test_models.py checks each one's logits and gradients against the paper module.

All of them embed patches with a reshape and one matmul (the stride-P conv's function) and
run token mixing's dense layers as einsums that contract the token axis where it lies,
instead of transposing the stream around `nn.Dense`. Dropout draws its masks in the
formulation's own layout (equally distributed, not the same bits); stochastic depth draws
the same per-example masks in all.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixer_flax import backends
from mixer_flax.models import chunking
from mixer_flax.models.common import LN_EPS, PAPER, Dtype, drop_path


class Formulation(NamedTuple):
  """How a formulation lays out the residual stream and runs token mixing."""

  stream: str  # the residual stream: 'nsc' (N, S, C) or 'snc' (S, N, C)
  token_einsums: tuple[str, str]  # token_mixing's Dense_0 and Dense_1 (m: N*C flattened)
  gelu_remat: bool = False  # recompute GELUs in the backward pass (jax.checkpoint)


# Measurements: docs/performance.md (sections named in the comments).
FORMULATIONS = {
    # Tokens contracted in place: a B/16 token MLP at 0.80-0.89 of the CPU's peak vs 0.72
    # for the paper's swapaxes + Dense ("What the implementation does"). CPU default.
    'nsc': Formulation('nsc', ('nsc,sd->ndc', 'ndc,ds->nsc')),
    # (S, N, C) stream: token mixing as two 2-D GEMMs; H200 train step +7%, inference equal
    # ("GPU: issue-14 probe"). GPU default.
    'snc': Formulation('snc', ('sm,sd->dm', 'dm,ds->sm')),
    # Candidate: HLO-bytes measurement only, timed next GPU session. Token MLP hidden
    # (N*C, D_S): bias + GELU fit cuBLASLt epilogues; H200 compile: forward non-GEMM bytes
    # -29% ("Compiled for an H200 without a GPU").
    'snc_md': Formulation('snc', ('sm,sd->md', 'md,ds->sm')),
    # Candidate: HLO-bytes measurement only, timed next GPU session. 'snc_md' with GELUs
    # recomputed in the backward pass (BIAS_GELU_AUX epilogues): gradient non-GEMM bytes
    # -34%, forward as 'snc_md' (same section).
    'snc_md_gelu_remat': Formulation('snc', ('sm,sd->md', 'md,ds->sm'), gelu_remat=True),
}
CANDIDATES = ('snc_md', 'snc_md_gelu_remat')  # for scripts/benchmark.py --also formulation=
NAMES = (PAPER, *FORMULATIONS)  # what `MlpMixer.formulation` accepts (or None)


def resolve(name: str | None) -> str:
  """`name` checked ('paper' or a FORMULATIONS key); None: the backend's default."""
  if name is None:
    return backends.current().formulation
  if name not in NAMES:
    raise ValueError(f'formulation={name!r} is unknown; use one of {", ".join(NAMES)} or '
                     'None (the backend default).')
  return name


def pinned(model: Any) -> Any:
  """`model` (an `MlpMixer`) with its formulation fixed: never chunked, same function."""
  return model.clone(formulation=resolve(model.formulation))


def patches(images: jax.Array, patch_size: int, stream: str) -> jax.Array:
  """`(N, H, W, c)` -> row-major patches `(N, S, P*P*c)` ('nsc') or `(S, N, P*P*c)`."""
  n, h, w, c = images.shape
  p = patch_size
  x = images.reshape(n, h // p, p, w // p, p, c)
  x = x.transpose((1, 3, 0, 2, 4, 5) if stream == 'snc' else (0, 1, 3, 2, 4, 5))
  return x.reshape((h // p) * (w // p), n, -1) if stream == 'snc' else x.reshape(n, -1, p * p * c)


class Stem(nn.Module):
  """`stem`: the parameters of `nn.Conv(C, (P, P), strides=(P, P))`, as one matmul."""

  hidden_dim: int
  patch_size: int
  stream: str
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array:
    """Images `(N, H, W, 3)` -> tokens in the stream's layout."""
    p, c = self.patch_size, images.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (p, p, c, self.hidden_dim),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.hidden_dim,), jnp.float32)
    images, kernel, bias = nn.dtypes.promote_dtype(images, kernel, bias, dtype=self.dtype)
    return patches(images, p, self.stream) @ kernel.reshape(-1, self.hidden_dim) + bias


class TokenDense(nn.Module):
  """`nn.Dense` over tokens as one einsum: kernel `(in, features)`, bias `(features,)`.

  `spec` names the input, the kernel (contracted axis, output axis) and the output, e.g.
  'nsc,sd->ndc'; the bias is added along the output axis.
  """

  features: int
  spec: str
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`x` in the spec's input layout -> its output layout."""
    inputs, rest = self.spec.split(',')
    axes, out = rest.split('->')
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (x.shape[inputs.index(axes[0])], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    axis = out.index(axes[1])
    return jnp.einsum(self.spec, x, kernel) + bias.reshape(
        [-1 if a == axis else 1 for a in range(len(out))])


class Mlp(nn.Module):
  """`token_mixing` (with `token_einsums`) or `channel_mixing` (without): mixer.MlpBlock."""

  mlp_dim: int
  token_einsums: tuple[str, str] | None = None
  gelu_remat: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Channel mixing maps `(..., C)`; token mixing the token einsums' input layout."""
    if self.token_einsums:
      width = x.shape[self.token_einsums[0].split(',')[0].index('s')]
      dense0 = TokenDense(self.mlp_dim, self.token_einsums[0], self.dtype, name='Dense_0')
      dense1 = TokenDense(width, self.token_einsums[1], self.dtype, name='Dense_1')
    else:
      dense0 = nn.Dense(self.mlp_dim, dtype=self.dtype, name='Dense_0')
      dense1 = nn.Dense(x.shape[-1], dtype=self.dtype, name='Dense_1')
    gelu = jax.checkpoint(nn.gelu) if self.gelu_remat else nn.gelu
    y = nn.Dropout(self.dropout, deterministic=not train)(gelu(dense0(x)))
    return nn.Dropout(self.dropout, deterministic=not train)(dense1(y))


class Block(nn.Module):
  """`MixerBlock_{i}` (mixer.MixerBlock) on a stream laid out as `form.stream`."""

  tokens_mlp_dim: int
  channels_mlp_dim: int
  form: Formulation
  drop_rate: float = 0.0
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps the stream to the same shape; `train` positional for `nn.remat`."""
    kw = dict(gelu_remat=self.form.gelu_remat, dropout=self.dropout, dtype=self.dtype)
    batch_axis = self.form.stream.index('n')
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='LayerNorm_0')(x)
    if self.form.stream == 'snc':
      y = y.reshape(y.shape[0], -1)  # (S, N*C): each token-mixing layer is one 2-D GEMM
    y = Mlp(self.tokens_mlp_dim, self.form.token_einsums, **kw, name='token_mixing')(
        y, train=train).reshape(x.shape)
    x = x + drop_path(self, y, self.drop_rate, train=train, batch_axis=batch_axis)
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='LayerNorm_1')(x)
    y = Mlp(self.channels_mlp_dim, **kw, name='channel_mixing')(y, train=train)
    return x + drop_path(self, y, self.drop_rate, train=train, batch_axis=batch_axis)


def apply(model: Any, images: jax.Array, *, train: bool, return_prelogits: bool) -> Any:
  """`model.__call__` (an `MlpMixer`, bound, inside its compact call) in its formulation."""
  name = resolve(model.formulation)
  if model.formulation is None and not train and not model.is_initializing():
    chunk = chunking.chunk_size(model, images.shape)
    if 0 < chunk < images.shape[0]:
      return chunking.apply_in_chunks(model.clone(parent=None, formulation=name),
                                      model.variables, images, chunk=chunk,
                                      return_prelogits=return_prelogits)
  form = FORMULATIONS[name]
  x = Stem(model.hidden_dim, model.patch_size, form.stream, model.dtype, name='stem')(images)
  block = nn.remat(Block, static_argnums=(2,)) if model.remat else Block
  for i in range(model.num_blocks):
    x = block(model.tokens_mlp_dim, model.channels_mlp_dim, form, model.drop_rate(i),
              model.dropout, model.dtype, name=f'MixerBlock_{i}')(x, train)
  x = nn.LayerNorm(epsilon=LN_EPS, dtype=model.dtype, name='pre_head_layer_norm')(x)
  pre_logits = jnp.mean(x.astype(jnp.float32), axis=form.stream.index('s'))
  return model.head(pre_logits, return_prelogits)
