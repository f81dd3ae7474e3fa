"""Exports a Mixer checkpoint to a timm `MlpMixer` state_dict (PyTorch).

    python scripts/export_timm.py IN.npz OUT.safetensors   # or OUT.pth
    python scripts/export_timm.py IN.npz OUT.pth --verify  # also compare logits in PyTorch

Load it in PyTorch with the printed constructor, e.g. for Mixer-B/16 at 224 px:

    model = timm.create_model('mixer_b16_224', num_classes=1000)
    model.load_state_dict(safetensors.torch.load_file('OUT.safetensors'))

Inputs in [-1, 1] (timm's Mixer configs use mean = std = 0.5). timm uses the
exact GELU, the reference its tanh approximation: logits agree to ~1e-3.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from mixer_flax import checkpoint, checkpoint_info, export_timm


def verify(params: dict, state: dict, *, seed: int = 0) -> float:
  """Max |logits difference| between our Flax model and timm on random images."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from mixer_flax import models  # pylint: disable=g-import-not-at-top
  kwargs = export_timm.timm_model_kwargs(params)
  timm_model = export_timm.import_timm_mlp_mixer().MlpMixer(**kwargs).eval()
  timm_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  info = checkpoint_info.describe(params)
  ours = models.MlpMixer(num_classes=info['num_classes'], patch_size=info['patch_size'],
                         hidden_dim=info['hidden_dim'], num_blocks=info['num_blocks'],
                         tokens_mlp_dim=info['tokens_mlp_dim'],
                         channels_mlp_dim=info['channels_mlp_dim'])
  size = info['image_size']
  images = np.random.default_rng(seed).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  expected = np.asarray(jax.jit(ours.apply)({'params': params}, images))
  with torch.no_grad():
    got = timm_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  return float(np.abs(got - expected).max())


def main(argv: list[str] | None = None) -> int:
  """Entry point; returns the exit status."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('src', help='our checkpoint .npz (local path, gs:// or https:// URL)')
  parser.add_argument('dst', help='output file: .safetensors (needs safetensors) or .pth (torch)')
  parser.add_argument('--verify', action='store_true',
                      help='build the timm model, load the export strictly and compare logits')
  args = parser.parse_args(argv)
  params = checkpoint.load_npz(args.src)
  state = export_timm.to_timm_state_dict(params)
  kwargs = export_timm.timm_model_kwargs(params)
  export_timm.save_state_dict(args.dst, state, metadata={
      'format': 'pt', 'source': args.src, 'timm_mlp_mixer_kwargs': json.dumps(kwargs)})
  print(f'wrote {args.dst}: {len(state)} tensors, {export_timm.count(state):,} parameters')
  name = export_timm.timm_model_name(params)
  if name:
    print(f"timm:  timm.create_model('{name}', num_classes={kwargs['num_classes']})")
  print(f'timm:  timm.models.mlp_mixer.MlpMixer(**{kwargs})')
  if args.verify:
    print(f'verify: max |logits(timm) - logits(flax)| = {verify(params, state):.3g} '
          '(exact vs tanh GELU)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
