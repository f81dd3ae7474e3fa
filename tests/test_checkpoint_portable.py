"""scripts/export.py (checkpoint.cli.export_main): jax.export module run without mixer_flax."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import cli

_RELOAD = """
import sys
import numpy as np
from jax import export
exported = export.deserialize(bytearray(open(sys.argv[1], 'rb').read()))
for n in (1, 3):
  images = np.load(sys.argv[2])[:n]
  np.save(sys.argv[3] + f'.{n}.npy', np.asarray(exported.call(images)))
assert not any(m.split('.')[0] in ('mixer_flax', 'flax') for m in sys.modules), 'imported'
"""


def test_exported_module_reloads_without_mixer_flax(tmp_path, random_mixer_params):
  model = models.create_model('Mixer-Ti_4', num_classes=6)
  params = random_mixer_params(model, 16)
  ckpt = str(tmp_path / 'ti4.npz')
  checkpoint.save_npz(ckpt, params)
  out = str(tmp_path / 'ti4.jax_export')
  assert cli.export_main(['--checkpoint', ckpt, '--output', out, '--platforms', 'cpu']) == 0
  info = json.load(open(out + '.json'))
  assert info['inputs'] == ['float32[b,16,16,3]'] and info['outputs'] == ['float32[b,6]']

  images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 16, 3)).astype(np.float32)
  np.save(tmp_path / 'images.npy', images)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  subprocess.run([sys.executable, '-c', _RELOAD, out, str(tmp_path / 'images.npy'),
                  str(tmp_path / 'logits')], check=True, cwd=tmp_path, env=env)
  want = np.asarray(jax.jit(model.apply)({'params': params}, images))
  assert np.abs(want).max() > 0.1
  for n in (1, 3):  # The batch dimension is symbolic.
    np.testing.assert_allclose(np.load(tmp_path / f'logits.{n}.npy'), want[:n], atol=1e-5)
