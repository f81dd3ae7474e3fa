"""Timing harness: timed call loops, the matmul peak, memory of an executable.

Each timed run is bracketed by two matmul-peak measurements, so a shared, noisy
machine biases rate and peak alike (see `measure`).
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def timed(fn: Callable[[], Any], *, min_time: float, calls: int | None = None
           ) -> tuple[float, float, int]:
  """Times calls of `fn` (blocking on the last result) for >= `min_time` s, or `calls` calls.

  Returns:
    `(wall seconds per call, process CPU seconds per call, calls)`. CPU time
    (all threads) is what a shared machine's other load does not inflate.
  """
  n = calls or 1
  while True:
    t0, c0 = time.perf_counter(), time.process_time()
    out = None
    for _ in range(n):
      out = fn()
    jax.block_until_ready(out)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if calls or dt >= min_time:
      return dt / n, dc / n, n
    n = max(n + 1, int(n * 1.2 * min_time / max(dt, 1e-6)))


class MatmulPeak:
  """Measures the dense `size^3` matmul rate (FLOP/s) of the default device."""

  def __init__(self, *, size: int, dtype: Any, min_time: float):
    ka, kb = jax.random.split(jax.random.key(0))
    self.a = jax.random.normal(ka, (size, size), dtype)
    self.b = jax.random.normal(kb, (size, size), dtype)
    self.fn = jax.jit(lambda a, b: a @ b)
    self.flops = 2.0 * size ** 3
    self.min_time = min_time
    jax.block_until_ready(self.fn(self.a, self.b))
    _, _, self.calls = timed(lambda: self.fn(self.a, self.b), min_time=min_time)

  def __call__(self) -> tuple[float, float]:
    """One measurement: (FLOP per wall second, FLOP per process-CPU second)."""
    sec, cpu, _ = timed(lambda: self.fn(self.a, self.b), min_time=self.min_time,
                        calls=self.calls)
    return self.flops / sec, self.flops / max(cpu, 1e-9)


def memory(compiled: Any) -> dict[str, float]:
  """XLA's buffer sizes for one executable and the runtime peak so far, in MiB."""
  out: dict[str, float] = {}
  try:
    ma = compiled.memory_analysis()
    for key in ('temp_size_in_bytes', 'argument_size_in_bytes', 'output_size_in_bytes'):
      out['xla_' + key.replace('_size_in_bytes', '_mib')] = getattr(ma, key) / 2 ** 20
  except Exception:  # noqa: BLE001 - not every backend implements it.
    pass
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    out['device_peak_mib'] = stats['peak_bytes_in_use'] / 2 ** 20
  else:  # ru_maxrss is in KiB on Linux.
    out['host_peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
  return out


def measure(step: Callable[[], Any], *, peak: MatmulPeak, images_per_step: int,
            flops_per_step: float, repeats: int, min_time: float) -> dict[str, Any]:
  """Times `step` `repeats` times, each bracketed by two peak measurements."""
  _, _, calls = timed(step, min_time=min_time)  # warm-up, and sizes the runs
  rates, peaks, fracs, cpu_fracs = [], [], [], []
  for _ in range(repeats):
    p0, c0 = peak()
    sec, cpu, _ = timed(step, min_time=min_time, calls=calls)
    p1, c1 = peak()
    p, pc = 0.5 * (p0 + p1), 0.5 * (c0 + c1)
    rates.append(images_per_step / sec)
    peaks.append(p)
    fracs.append(flops_per_step / sec / p)
    cpu_fracs.append(flops_per_step / max(cpu, 1e-9) / pc)
  return {'img_per_s': statistics.median(rates), 'img_per_s_runs': rates,
          'peak_flops_runs': peaks, 'fraction_of_peak': statistics.median(fracs),
          'fraction_of_peak_runs': fracs, 'steps_per_run': calls,
          'cpu_time_fraction_of_peak': statistics.median(cpu_fracs),
          'cpu_time_fraction_of_peak_runs': cpu_fracs}
