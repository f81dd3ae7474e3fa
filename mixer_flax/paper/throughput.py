"""Forward throughput of the variants on this machine, ranked against the paper's (Tables 2, 3)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mixer_flax import models
from mixer_flax.paper.tables import PAPER_IMG_PER_SEC_CORE
from mixer_flax.perf.flops import analytic_flops, cost_flops


@dataclasses.dataclass
class Throughput:
  """Forward-pass speed of one variant on this machine."""

  name: str
  batch: int
  dtype: str
  img_per_sec: float
  xla_flops: float | None  # per image, from XLA's cost analysis of the compiled forward
  analytic_flops: float  # per image, matmuls only


def measure_throughput(name: str, *, batch: int, dtype: str = 'float32', image_size: int = 224,
                       iters: int = 3, num_classes: int = 1000) -> Throughput:
  """Times the jitted forward pass of `name` (first local device, random inputs).

  Args:
    name: a `models.MODEL_CONFIGS` key.
    batch: images per forward call.
    dtype: computation dtype ('float32' or 'bfloat16').
    image_size: square input side.
    iters: timed calls after one warm-up call; the best call is reported.
    num_classes: head width.

  Returns:
    A `Throughput` with images/sec of the best timed call.
  """
  model = models.create_model(name, num_classes=num_classes, dtype=dtype)
  x = jnp.zeros((batch, image_size, image_size, 3), jnp.float32)
  # Weight values do not change the speed: constant weights skip compiling `init`.
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x[:1]))['params']
  params = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 0.01, s.dtype), shapes)
  fwd = jax.jit(lambda p, im: model.apply({'params': p}, im))
  compiled = fwd.lower(params, x).compile()
  flops = cost_flops(compiled)
  x = jax.random.uniform(jax.random.PRNGKey(1), x.shape, minval=-1.0, maxval=1.0)
  jax.block_until_ready(compiled(params, x))
  best = float('inf')
  for _ in range(iters):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params, x))
    best = min(best, time.perf_counter() - t0)
  return Throughput(name=name, batch=batch, dtype=dtype, img_per_sec=batch / best,
                    xla_flops=None if flops is None else flops / batch,
                    analytic_flops=analytic_flops(variant=name, image_size=image_size,
                                                  num_classes=num_classes)['total'])


def rank_agreement(ours: dict[str, float], paper: dict[str, float]) -> tuple[float, int]:
  """Spearman rank correlation of two speed dicts over their shared keys.

  Returns:
    `(rho, n)`; rho is nan when fewer than 2 keys are shared.
  """
  keys = sorted(set(ours) & set(paper))
  if len(keys) < 2:
    return float('nan'), len(keys)
  ra = np.argsort(np.argsort([ours[k] for k in keys])).astype(float)
  rb = np.argsort(np.argsort([paper[k] for k in keys])).astype(float)
  return float(np.corrcoef(ra, rb)[0, 1]), len(keys)


def throughput_markdown(results: Sequence[Throughput], *, machine: str) -> str:
  """Markdown table of measured throughput next to the paper's img/s/core."""
  ours = {r.name: r.img_per_sec for r in results}
  shared = {n: v for n, v in PAPER_IMG_PER_SEC_CORE.items() if n in ours}
  # Ranks among the variants both tables have (others, e.g. S/8, get '-').
  rank_ours = {n: i + 1 for i, n in enumerate(sorted(shared, key=ours.get, reverse=True))}
  rank_paper = {n: i + 1 for i, n in enumerate(sorted(shared, key=shared.get, reverse=True))}
  lines = [f'Machine: {machine}.', '',
           '| model | batch | dtype | ours img/s | rank | paper img/s/core (TPUv3) | paper rank '
           '| GFLOPs/img (XLA) | GFLOPs/img (analytic, matmuls) |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in results:
    paper = PAPER_IMG_PER_SEC_CORE.get(r.name)
    xla = '-' if r.xla_flops is None else f'{r.xla_flops / 1e9:.2f}'
    lines.append(
        f'| {r.name} | {r.batch} | {r.dtype} | {r.img_per_sec:.2f} | '
        f'{rank_ours.get(r.name, "-")} | '
        f'{"-" if paper is None else int(paper)} | {rank_paper.get(r.name, "-")} | {xla} | '
        f'{r.analytic_flops / 1e9:.2f} |')
  rho, n = rank_agreement(ours, PAPER_IMG_PER_SEC_CORE)
  lines += ['', f'Spearman rank correlation with the paper over {n} shared variants: '
            + ('n/a' if np.isnan(rho) else f'{rho:.3f}') + '.']
  return '\n'.join(lines)
