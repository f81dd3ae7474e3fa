r"""Writes a Mixer checkpoint as a portable inference module (serialized jax.export / StableHLO).

    python scripts/export.py --checkpoint workdirs/digits/final.npz --output digits.jax_export
    python scripts/export.py --checkpoint imagenet1k/Mixer-B_16.npz --output b16.jax_export \
        --platforms cpu,cuda,tpu

The module takes float32 images `(N, H, W, 3)` in [-1, 1] for any batch size N and
returns float32 logits `(N, classes)`; `OUTPUT.json` records the shapes. It runs with
JAX alone (no mixer_flax, no Flax):

    from jax import export
    exported = export.deserialize(bytearray(open('digits.jax_export', 'rb').read()))
    logits = exported.call(images)
"""

import sys

from mixer_flax import backends
from mixer_flax.checkpoint import cli

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  sys.exit(cli.export_main())
