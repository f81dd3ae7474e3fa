"""XLA flags the project sets by default, before the JAX backend starts.

XLA reads `XLA_FLAGS` once, when the first backend is created, so these are
appended to the environment variable when `mixer_flax` is imported (before any
computation). Rules:

* a flag the user already set in `XLA_FLAGS` (any value) is left alone;
* `MIXER_FLAX_XLA_DEFAULTS=0` turns all of this off;
* nothing is changed once a JAX backend exists (flags would be ignored then).

`--xla_gpu_enable_triton_gemm=false`: XLA then runs Mixer's matmuls with cuBLAS
instead of its Triton GEMM emitter, +22% inference and +2% training for
Mixer-B/16 bf16 on an H200 (docs/performance.md, GPU section). It is a GPU
flag: the CPU and TPU backends accept and ignore it.
"""

from __future__ import annotations

import os
import sys

DEFAULT_FLAGS = ('--xla_gpu_enable_triton_gemm=false',)
SWITCH = 'MIXER_FLAX_XLA_DEFAULTS'


def _name(flag: str) -> str:
  return flag.lstrip('-').split('=', 1)[0]


def _backend_started() -> bool:
  """True if this process already created a JAX backend (flags would come too late)."""
  bridge = sys.modules.get('jax._src.xla_bridge')
  return bool(getattr(bridge, '_backends', None))


def apply_defaults(environ: dict[str, str] | None = None) -> list[str]:
  """Appends the `DEFAULT_FLAGS` the user did not set to `XLA_FLAGS`; returns those added."""
  env = os.environ if environ is None else environ
  if env.get(SWITCH, '1').strip().lower() in ('0', 'false', 'no', 'off'):
    return []
  if environ is None and _backend_started():
    return []
  current = env.get('XLA_FLAGS', '')
  have = {_name(f) for f in current.split()}
  added = [f for f in DEFAULT_FLAGS if _name(f) not in have]
  if added:
    env['XLA_FLAGS'] = ' '.join(current.split() + added)
  return added
