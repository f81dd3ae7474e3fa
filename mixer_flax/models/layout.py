"""Where the token axis lives in `MlpMixer`'s activations (performance only).

The residual stream (`token_layout`):

* 'nsc': tokens `(N, S, C)`, as in the paper's reference code. Token mixing
  contracts axis 1 (`einsum('nsc,sd->ndc')`); XLA folds the layout change into
  the neighbouring element-wise ops.
* 'snc': tokens `(S, N, C)`. Token mixing is then a plain 2-D GEMM,
  `W^T (D_S x S) @ x (S x N*C)`, and channel mixing is unchanged (last axis).
  Measured on one H200 (bf16, cuBLAS GEMMs): train step +7%, inference equal.

The token-mixing MLP's hidden activations (`token_hidden`):

* 'dm': in the stream's own layout, `(D_S, N, C)` / `(N, D_S, C)`;
* 'md': with D_S last, `(N*C, D_S)` ('snc', a 2-D GEMM) / `(N, C, D_S)` ('nsc'). The
  bias then runs along the GEMM output's minor axis, so XLA can put bias + GELU in a
  cuBLASLt epilogue (an H200 compile of Mixer-B/16 bf16 at batch 1024: 24 instead of 12
  BIAS_GELU GEMMs, 14.5 GB less element-wise traffic; docs/performance.md).

All of these compute the same function on the same parameters (tests/test_models.py).
Dropout masks are drawn in the activations' own layout, so with `dropout > 0` two
layouts draw different (equally distributed) masks; stochastic depth draws the
same per-example mask in both. Anything exposed to users (features, pre-logits)
is returned in `(N, S, C)` / `(N, C)`: convert with `to_nsc`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LAYOUTS = ('nsc', 'snc')
# Layout chosen when `MlpMixer.token_layout` is None, per JAX backend (others: 'nsc').
AUTO = {'gpu': 'snc', 'cpu': 'nsc'}
HIDDENS = ('dm', 'md')
# Token-mixing hidden layout when `MlpMixer.token_hidden` is None, per backend (others:
# 'dm'). 'md' stays opt-in until a GPU run measures it (docs/performance.md).
AUTO_HIDDEN: dict[str, str] = {}


def _pick(value: str | None, *, key: str, allowed: tuple[str, ...], auto: dict[str, str],
          fallback: str) -> str:
  """`value` if allowed; None: `auto` for the default backend, else `fallback`."""
  if value is None:
    return auto.get(jax.default_backend(), fallback)
  if value not in allowed:
    raise ValueError(f'{key}={value!r} unknown; use one of {allowed} or None (auto).')
  return value


def resolve(layout: str | None) -> str:
  """The concrete stream layout for `token_layout` (None: `AUTO` for the default backend)."""
  return _pick(layout, key='token_layout', allowed=LAYOUTS, auto=AUTO, fallback='nsc')


def resolve_hidden(hidden: str | None) -> str:
  """The concrete token-mixing hidden layout for `token_hidden` (None: `AUTO_HIDDEN`)."""
  return _pick(hidden, key='token_hidden', allowed=HIDDENS, auto=AUTO_HIDDEN, fallback='dm')


def token_axis(layout: str) -> int:
  """Axis of the tokens (S) in a stream of `layout`."""
  return 0 if layout == 'snc' else 1


def batch_axis(layout: str) -> int:
  """Axis of the images (N) in a stream of `layout`."""
  return 1 if layout == 'snc' else 0


def patches(images: jax.Array, patch_size: int, layout: str) -> jax.Array:
  """Cuts `(N, H, W, c)` images into row-major patches `(N, S, P*P*c)` ('nsc') or `(S, N, ...)`."""
  n, h, w, c = images.shape
  p = patch_size
  x = images.reshape(n, h // p, p, w // p, p, c)
  if layout == 'snc':
    return x.transpose(1, 3, 0, 2, 4, 5).reshape((h // p) * (w // p), n, p * p * c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, (h // p) * (w // p), p * p * c)


def token_matmul(x: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
  """Contracts the token axis of `x` with `kernel (S, D)`, no materialised transpose.

  'nsc': `(N, S, C) -> (N, D, C)`; 'snc': `(S, N, C) -> (D, N, C)` as one 2-D GEMM.
  """
  if layout == 'snc':
    s = x.shape[0]
    y = jnp.einsum('sm,sd->dm', x.reshape(s, -1), kernel)
    return y.reshape((kernel.shape[1],) + x.shape[1:])
  return jnp.einsum('nsc,sd->ndc', x, kernel)


def to_hidden(x: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
  """Stream x `kernel (S, D)` -> 'md' hidden: `(N*C, D)` ('snc', 2-D GEMM) or `(N, C, D)`."""
  if layout == 'snc':
    return jnp.einsum('sm,sd->md', x.reshape(x.shape[0], -1), kernel)
  return jnp.einsum('nsc,sd->ncd', x, kernel)


def from_hidden(h: jax.Array, kernel: jax.Array, layout: str) -> jax.Array:
  """'md' hidden x `kernel (D, S)` -> `(S, N*C)` ('snc': reshape to `(S, N, C)`) / `(N, S, C)`."""
  if layout == 'snc':
    return jnp.einsum('md,ds->sm', h, kernel)
  return jnp.einsum('ncd,ds->nsc', h, kernel)


def to_nsc(x: jax.Array, layout: str) -> jax.Array:
  """A stream of `layout` as `(N, S, C)` (a transpose only for 'snc')."""
  return jnp.swapaxes(x, 0, 1) if layout == 'snc' else x
