"""What mixer_flax runs by default on each JAX backend: one table, each entry measured.

The model's formulation and inference chunking (models/formulations.py, models/chunking.py),
RandAugment's op selection and histogram method (data/augment.py) and the XLA flags set before
JAX starts (`apply_xla_flags`, called by the entry points). Numbers and how they were taken:
docs/performance.md, "Defaults per backend". Plain data: this module imports nothing from
mixer_flax, and `current()` asks JAX for the backend only when called.
"""

from __future__ import annotations

import os
import sys
from typing import NamedTuple


class Defaults(NamedTuple):
  """One backend's defaults."""

  formulation: str  # models/formulations.py FORMULATIONS
  inference_chunk_bytes: int  # activation budget of one inference chunk (0: no chunking)
  randaug_mode: str  # data/augment.py MODES
  randaug_histogram: str  # data/augment_ops.py HISTOGRAMS
  xla_flags: tuple[str, ...] = ()


DEFAULTS = {
    'cpu': Defaults(
        # Token axis contracted in place: a B/16 token MLP at 0.80-0.89 of peak vs 0.72 (paper).
        formulation='nsc',
        # Chunks that fit a last-level cache: B/16 b32 0.94-1.00 of peak vs 0.86-0.96 unchunked.
        inference_chunk_bytes=32 * 2**20,
        # lax.switch runs only the drawn op: 4.1-4.9 ms vs 28.8-37.3 ms ('compact'), 8 x 224 px.
        randaug_mode='switch',
        # One add per pixel: 11.1 ms vs 107 ms (bf16 one-hot matmul), histograms of 8 x 224 px.
        randaug_histogram='scatter'),
    'gpu': Defaults(
        # (S, N, C) stream, token mixing as 2-D GEMMs: H200 train step +7%, inference equal.
        formulation='snc',
        # GPUs want big batches: no chunking.
        inference_chunk_bytes=0,
        # Histograms only where equalize was drawn: H200, 512 images, 3.34 ms vs 7.29 ('select').
        randaug_mode='compact',
        # int8 one-hot matmul: the same RandAugment in 3.34 ms vs 4.21-4.39 ms ('scatter').
        randaug_histogram='onehot_int8',
        # cuBLAS instead of Triton GEMMs: H200 inference +22%, train step +2%.
        xla_flags=('--xla_gpu_enable_triton_gemm=false',)),
    # Not measured on a TPU: the CPU's formulation (no chunking) and RandAugment's vmapped mode.
    'tpu': Defaults(formulation='nsc', inference_chunk_bytes=0, randaug_mode='compact',
                    randaug_histogram='scatter'),
}
SWITCH = 'MIXER_FLAX_XLA_DEFAULTS'  # =0 (or false/no/off): `apply_xla_flags` adds nothing


def current() -> Defaults:
  """The defaults of `jax.default_backend()` (unknown backends: the TPU's)."""
  import jax  # here, not at import: importing this module must not start a backend
  return DEFAULTS.get(jax.default_backend(), DEFAULTS['tpu'])


def _name(flag: str) -> str:
  return flag.lstrip('-').split('=', 1)[0]


def _backend_started() -> bool:
  """True if this process already created a JAX backend (XLA read its flags then)."""
  bridge = sys.modules.get('jax._src.xla_bridge')
  return bool(getattr(bridge, '_backends', None))


def apply_xla_flags(environ: dict[str, str] | None = None) -> list[str]:
  """Appends every backend's default XLA flags the user did not set to `XLA_FLAGS`.

  Call before JAX starts a backend (entry points do). All backends' flags are set because
  the backend is not known yet; each backend accepts and ignores the others' flags. A flag
  already in `XLA_FLAGS` (any value) wins; `MIXER_FLAX_XLA_DEFAULTS=0` turns this off; once
  a backend exists nothing changes. Returns the flags added.
  """
  env = os.environ if environ is None else environ
  if env.get(SWITCH, '1').strip().lower() in ('0', 'false', 'no', 'off'):
    return []
  if environ is None and _backend_started():
    return []
  current_flags = env.get('XLA_FLAGS', '').split()
  have = {_name(f) for f in current_flags}
  wanted = dict.fromkeys(f for d in DEFAULTS.values() for f in d.xla_flags)
  added = [f for f in wanted if _name(f) not in have]
  if added:
    env['XLA_FLAGS'] = ' '.join(current_flags + added)
  return added
