"""Exports a Mixer checkpoint to a timm `MlpMixer` state_dict (PyTorch).

    python scripts/export_timm.py IN.npz OUT.safetensors   # or OUT.pth
    python scripts/export_timm.py IN.npz OUT.pth --verify  # also compare logits in PyTorch

Load it in PyTorch with the printed constructor, e.g. for Mixer-B/16 at 224 px:

    model = timm.create_model('mixer_b16_224', num_classes=1000)
    model.load_state_dict(safetensors.torch.load_file('OUT.safetensors'))

Inputs in [-1, 1] (timm's Mixer configs use mean = std = 0.5). timm uses the
exact GELU, the reference its tanh approximation: logits agree to ~1e-3.
"""

import sys

from mixer_flax import backends
from mixer_flax.checkpoint import cli

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  sys.exit(cli.export_timm_main())
