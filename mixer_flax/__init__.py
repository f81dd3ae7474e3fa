"""mixer_flax: MLP-Mixer (Tolstikhin et al., 2021) in JAX/Flax.

`mixer_flax.models` and `mixer_flax.checkpoint` import without TensorFlow; the
input pipeline imports it lazily.

Importing the package appends the project's default XLA flags to `XLA_FLAGS`
(before the backend starts; user-set flags win; `MIXER_FLAX_XLA_DEFAULTS=0`
turns it off): see `mixer_flax/perf/xla_flags.py`.
"""

from mixer_flax.perf import xla_flags as _xla_flags

_xla_flags.apply_defaults()

__version__ = '0.1.0'
