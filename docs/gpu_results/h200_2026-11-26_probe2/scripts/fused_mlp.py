"""Pallas kernels for the channel-mixing MLP of a Mixer block (forward only, inference).

Each kernel is one GEMM with its element-wise neighbours fused in, so the big
activations cross memory once (issue 14: the gap to the matmul-only bound is the
bias/GELU/LayerNorm/residual traffic that XLA leaves outside cuBLAS GEMMs):

  dense_gelu(x, w, b)                  gelu_tanh(x @ w + b)          x (M, K) -> (M, N)
  layernorm_dense_gelu(x, s, t, w, b)  gelu_tanh(LN(x) @ w + b)      LN prologue, eps 1e-6
  dense_residual(x, w, b, r)           r + (x @ w + b)               residual epilogue

The GEMM accumulates in float32 over K in `block_k` steps; bias, GELU (the tanh
approximation of `flax.linen.gelu`) and the residual add act on the float32
accumulator, with one cast to the output dtype at the end. LayerNorm statistics
are flax's (float32, Var = E[x^2] - E[x]^2 clipped at 0). Grid: (N/block_n,
M/block_m), N tiles fastest. Shapes not divisible by the blocks are zero-padded
(a copy of the operand; K padding leaves LN statistics exact since they divide by
the true K). On GPU the kernels lower through Triton; `interpret=True` runs them
on CPU. No VJP: inference only (`MlpMixer(fused_channel_mixing=True)`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

LN_EPS = 1e-6  # LayerNorm epsilon of the reference Mixer code.
_SQRT_2_OVER_PI = float(np.sqrt(2.0 / np.pi))


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """Tile sizes (powers of 2, >= 16: Triton's dot) and Triton launch parameters."""

  block_m: int = 128
  block_n: int = 128
  block_k: int = 64
  num_warps: int = 4
  num_stages: int = 3


# Tiles used when a call passes no config, per kernel: set these from GPU measurements.
DEFAULT_CONFIGS: dict[str, KernelConfig] = {
    'dense_gelu': KernelConfig(), 'layernorm_dense_gelu': KernelConfig(),
    'dense_residual': KernelConfig()}
# channel_mixing's default: LayerNorm in the first kernel (True) or by XLA before it (False).
FUSE_LAYER_NORM = True


def _gelu_tanh(x: jax.Array) -> jax.Array:
  """`flax.linen.gelu(x, approximate=True)`: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
  return x * (0.5 * (1.0 + jnp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)))))


def _mlp_kernel(*refs: Any, block_k: int, k_steps: int, k_true: int, eps: float,
                layer_norm: bool, gelu: bool, residual: bool, precision: Any) -> None:
  """One (block_m, block_n) output tile: [LN] -> GEMM over K -> +bias [-> GELU] [+residual]."""
  refs = list(refs)
  x_ref = refs.pop(0)
  scale_ref, shift_ref = (refs.pop(0), refs.pop(0)) if layer_norm else (None, None)
  w_ref, b_ref = refs.pop(0), refs.pop(0)
  r_ref = refs.pop(0) if residual else None
  (o_ref,) = refs
  block_m, block_n = o_ref.shape
  f32 = jnp.float32

  def cols(i: jax.Array) -> Any:
    return pl.ds(pl.multiple_of(i * block_k, block_k), block_k)

  if layer_norm:
    # Row statistics in one pass over the row block (flax's fast variance).
    def stats(i: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
      xk = x_ref[:, cols(i)].astype(f32)
      return carry[0] + jnp.sum(xk, axis=1), carry[1] + jnp.sum(xk * xk, axis=1)

    zeros = jnp.zeros((block_m,), f32)
    s1, s2 = lax.fori_loop(0, k_steps, stats, (zeros, zeros))
    mean = s1 / k_true
    rstd = lax.rsqrt(jnp.maximum(s2 / k_true - mean * mean, 0.0) + eps)

  def body(i: jax.Array, acc: jax.Array) -> jax.Array:
    xk = x_ref[:, cols(i)]
    if layer_norm:
      mul = rstd[:, None] * scale_ref[cols(i)].astype(f32)[None, :]
      y = (xk.astype(f32) - mean[:, None]) * mul + shift_ref[cols(i)].astype(f32)[None, :]
      xk = y.astype(w_ref.dtype)
    return acc + jnp.dot(xk, w_ref[cols(i), :], precision=precision,
                         preferred_element_type=f32)

  acc = lax.fori_loop(0, k_steps, body, jnp.zeros((block_m, block_n), f32))
  acc = acc + b_ref[...].astype(f32)[None, :]
  if gelu:
    acc = _gelu_tanh(acc)
  if residual:
    acc = acc + r_ref[...].astype(f32)
  o_ref[...] = acc.astype(o_ref.dtype)


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def _pad2(a: jax.Array, rows: int, cols: int) -> jax.Array:
  """Zero-pads a 2-D array to (rows, cols); no copy when already that shape."""
  if a.shape == (rows, cols):
    return a
  return jnp.pad(a, ((0, rows - a.shape[0]), (0, cols - a.shape[1])))


def _check(name: str, x: jax.Array, kernel: jax.Array, bias: jax.Array,
           expected: dict[str, tuple[jax.Array, tuple[int, ...]]], cfg: KernelConfig) -> None:
  """One ValueError naming every bad shape (`expected`: name -> (array, shape)) or block."""
  errors = []
  if x.ndim != 2 or kernel.ndim != 2 or x.shape[1] != kernel.shape[0]:
    errors.append(f'x {x.shape} and kernel {kernel.shape} must be (M, K) and (K, N)')
  else:
    expected = {'bias': (bias, (kernel.shape[1],)), **expected}
    errors += [f'{key} has shape {v.shape}, expected {shape}'
               for key, (v, shape) in expected.items() if v.shape != shape]
  for field in ('block_m', 'block_n', 'block_k'):
    b = getattr(cfg, field)
    if b < 16 or b & (b - 1):
      errors.append(f'{field}={b} must be a power of 2 >= 16 (Triton tiles)')
  if errors:
    raise ValueError(f'{name}: ' + '; '.join(errors))


def _fused(name: str, x: jax.Array, kernel: jax.Array, bias: jax.Array, *,
           config: KernelConfig | None, blocks: dict[str, int], interpret: bool, gelu: bool,
           residual: jax.Array | None = None, ln: tuple[jax.Array, jax.Array] | None = None,
           eps: float = LN_EPS) -> jax.Array:
  """Shared driver: checks, pads to the blocks, builds specs, calls the kernel, un-pads."""
  cfg = dataclasses.replace(config or DEFAULT_CONFIGS[name], **blocks)
  m, k = x.shape if x.ndim == 2 else (0, 0)
  n = kernel.shape[-1]
  extra = {} if residual is None else {'residual': (residual, (m, n))}
  if ln is not None:
    extra.update(ln_scale=(ln[0], (k,)), ln_bias=(ln[1], (k,)))
  _check(name, x, kernel, bias, extra, cfg)
  bm, bn, bk = cfg.block_m, cfg.block_n, cfg.block_k
  mp, np_, kp = _round_up(m, bm), _round_up(n, bn), _round_up(k, bk)
  pad_vec = lambda v, size: jnp.pad(v.astype(jnp.float32), (0, size - v.shape[0]))  # noqa: E731
  args = [_pad2(x, mp, kp)]
  specs = [pl.BlockSpec((bm, kp), lambda j, i: (i, 0))]
  if ln is not None:
    args += [pad_vec(ln[0], kp), pad_vec(ln[1], kp)]
    specs += [pl.BlockSpec((kp,), lambda j, i: (0,))] * 2
  args += [_pad2(kernel.astype(x.dtype), kp, np_), pad_vec(bias, np_)]
  specs += [pl.BlockSpec((kp, bn), lambda j, i: (0, j)), pl.BlockSpec((bn,), lambda j, i: (j,))]
  if residual is not None:
    args.append(_pad2(residual, mp, np_))
    specs.append(pl.BlockSpec((bm, bn), lambda j, i: (i, j)))
  out_dtype = x.dtype if residual is None else residual.dtype
  # float32 inputs: exact f32 products (not TF32), so f32 results match the plain formulation.
  precision = lax.Precision.HIGHEST if x.dtype == jnp.float32 else None
  body = functools.partial(
      _mlp_kernel, block_k=bk, k_steps=kp // bk, k_true=k, eps=eps, layer_norm=ln is not None,
      gelu=gelu, residual=residual is not None, precision=precision)
  out = pl.pallas_call(
      body,
      out_shape=jax.ShapeDtypeStruct((mp, np_), out_dtype),
      # N tiles vary fastest (CUDA grid x): CTAs running together share one row block of x
      # (read from HBM once, then from L2) and the kernel (a few MB) stays in L2.
      grid=(np_ // bn, mp // bm),
      in_specs=specs,
      out_specs=pl.BlockSpec((bm, bn), lambda j, i: (i, j)),
      compiler_params=plgpu.CompilerParams(num_warps=cfg.num_warps, num_stages=cfg.num_stages),
      interpret=interpret,
      name=name,
  )(*args)
  return out if (mp, np_) == (m, n) else out[:m, :n]


def dense_gelu(x: jax.Array, kernel: jax.Array, bias: jax.Array, *,
               config: KernelConfig | None = None, interpret: bool = False,
               **blocks: int) -> jax.Array:
  """GELU epilogue, gelu_tanh(x @ kernel + bias): x (M, K), kernel (K, N), bias (N,) -> (M, N).

  `blocks` (block_m, block_n, block_k, num_warps, num_stages) override `config`.
  """
  return _fused('dense_gelu', x, kernel, bias, config=config, blocks=blocks,
                interpret=interpret, gelu=True)


def layernorm_dense_gelu(x: jax.Array, ln_scale: jax.Array, ln_bias: jax.Array,
                         kernel: jax.Array, bias: jax.Array, *, eps: float = LN_EPS,
                         config: KernelConfig | None = None, interpret: bool = False,
                         **blocks: int) -> jax.Array:
  """LN prologue, gelu_tanh(LN(x) @ kernel + bias): x (M, K), ln_* (K,), kernel (K, N) -> (M, N).

  The normalised rows are cast to x.dtype before the GEMM, as flax's
  `nn.LayerNorm(dtype=x.dtype)` followed by `nn.Dense` does.
  """
  return _fused('layernorm_dense_gelu', x, kernel, bias, config=config, blocks=blocks,
                interpret=interpret, gelu=True, ln=(ln_scale, ln_bias), eps=eps)


def dense_residual(x: jax.Array, kernel: jax.Array, bias: jax.Array, residual: jax.Array, *,
                   config: KernelConfig | None = None, interpret: bool = False,
                   **blocks: int) -> jax.Array:
  """Residual epilogue, r + (x @ kernel + bias): x (M, K), kernel (K, N), r (M, N) -> r.dtype."""
  return _fused('dense_residual', x, kernel, bias, config=config, blocks=blocks,
                interpret=interpret, gelu=False, residual=residual)


def channel_mixing(x: jax.Array, block_params: dict[str, Any], *,
                   config: KernelConfig | None = None, config_out: KernelConfig | None = None,
                   fuse_layer_norm: bool | None = None, interpret: bool = False) -> jax.Array:
  """The channel-mixing half of a Mixer block, x + MLP(LN(x)), in two fused kernels.

  Args:
    x: the residual stream (..., C), in the computation dtype (e.g. bfloat16).
    block_params: one `MixerBlock_{i}` parameter dict (`LayerNorm_1`, `channel_mixing`).
    config: tiles of the first GEMM (C -> D_C); `config_out` of the second (default for
      both: `DEFAULT_CONFIGS`).
    fuse_layer_norm: LayerNorm in the first kernel's prologue; False: flax's
      `nn.LayerNorm` by XLA, then `dense_gelu` (None: `FUSE_LAYER_NORM`).
    interpret: run the kernels on CPU.

  Returns:
    (..., C) in x.dtype, the same function as `MixerBlock`'s second half.
  """
  ln, mlp = block_params['LayerNorm_1'], block_params['channel_mixing']
  rows = x.reshape(math.prod(x.shape[:-1]), x.shape[-1])
  dense0 = mlp['Dense_0']['kernel'], mlp['Dense_0']['bias']
  if FUSE_LAYER_NORM if fuse_layer_norm is None else fuse_layer_norm:
    h = layernorm_dense_gelu(rows, ln['scale'], ln['bias'], *dense0, config=config,
                             interpret=interpret)
  else:
    # parent=None: a free-standing module even when called inside MixerBlock.
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=x.dtype, parent=None).apply({'params': ln}, rows)
    h = dense_gelu(y, *dense0, config=config, interpret=interpret)
  y = dense_residual(h, mlp['Dense_1']['kernel'], mlp['Dense_1']['bias'], rows,
                     config=config_out, interpret=interpret)
  return y.reshape(x.shape)
