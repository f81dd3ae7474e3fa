"""The speed bound of Mixer: its matmul chain alone, timed in the same run as the model.

`matmul_chain` applies exactly the model's matmuls (stem, per block the two token- and two
channel-mixing layers, head) to the model's parameters, in the stream layout of the model's
formulation and in its dtype, with no LayerNorm, GELU, bias, residual or dropout: the FLOPs
are the analytic count of `perf/flops.py`, and the rate this chain reaches is what the full
model could reach if all element-wise work were free. The gradient bound is `jax.grad` of a
cross-entropy on the chain's logits w.r.t. the parameters (3x the forward FLOPs; no optimizer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mixer_flax.models import formulations
from mixer_flax.perf.timing import MatmulPeak, measure


def matmul_chain(*, patch_size: int, formulation: str, dtype: Any
                 ) -> Callable[[Any, jax.Array], jax.Array]:
  """`f(params, images (N, H, W, 3)) -> (N, K)` float32: the Mixer matmuls alone.

  `formulation`: a key of `formulations.FORMULATIONS` (its stream layout and token einsums).
  """
  dt = jnp.dtype(dtype)
  form = formulations.FORMULATIONS[formulation]

  def chain(params: Any, images: jax.Array) -> jax.Array:
    stem = params['stem']['kernel']
    x = formulations.patches(images.astype(dt), patch_size, form.stream)
    x = x @ stem.reshape(-1, stem.shape[-1]).astype(dt)
    i = 0
    while f'MixerBlock_{i}' in params:
      tok, ch = params[f'MixerBlock_{i}']['token_mixing'], params[f'MixerBlock_{i}'][
          'channel_mixing']
      y = x.reshape(x.shape[0], -1) if form.stream == 'snc' else x
      for spec, layer in zip(form.token_einsums, ('Dense_0', 'Dense_1')):
        y = jnp.einsum(spec, y, tok[layer]['kernel'].astype(dt))
      x = y.reshape(x.shape)
      x = x @ ch['Dense_0']['kernel'].astype(dt) @ ch['Dense_1']['kernel'].astype(dt)
      i += 1
    pre = jnp.mean(x, axis=form.stream.index('s'))
    return (pre @ params['head']['kernel'].astype(dt)).astype(jnp.float32)

  return chain


def bench_bound(model: Any, images: jax.Array, *, peak: MatmulPeak, flops: float,
                grad: bool, repeats: int, min_time: float) -> dict[str, Any]:
  """Times the chain of `model` (an `MlpMixer`) on `images`: forward, or its gradient."""
  batch = images.shape[0]
  params = jax.jit(lambda r: model.init(r, images[:1])['params'])(jax.random.key(0))
  # A random head: the model's zero-initialised head would make every gradient zero.
  head = params['head']['kernel']
  params = dict(params, head=dict(params['head'], kernel=0.02 * jax.random.normal(
      jax.random.key(1), head.shape, head.dtype)))
  name = formulations.resolve(model.formulation)
  name = 'nsc' if name == formulations.PAPER else name  # the paper's matmuls, tokens in place
  chain = matmul_chain(patch_size=model.patch_size, formulation=name, dtype=model.dtype)
  if grad:
    labels = jax.nn.one_hot(jnp.arange(batch) % head.shape[-1], head.shape[-1])

    def loss(p, x):
      return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(chain(p, x)), axis=-1))
    fn = jax.jit(jax.grad(loss))
  else:
    fn = jax.jit(chain)
  t0 = time.perf_counter()
  compiled = fn.lower(params, images).compile()
  compile_s = time.perf_counter() - t0
  res = measure(lambda: compiled(params, images), peak=peak, images_per_step=batch,
                flops_per_step=(3 if grad else 1) * batch * flops, repeats=repeats,
                min_time=min_time)
  res.update(compile_s=compile_s, formulation=name)
  return res
