"""`scripts/*.py` and `python -m mixer_flax.transfer` on bad input: one line naming the thing
and what to do, exit status 1, no traceback (in this process, capsys); the checkpoint metadata
(`final.json`) used by predict and carried by the exports.
"""

import json

import numpy as np
import pytest
from entry_helpers import one_line_error

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import cli as checkpoint_cli
from mixer_flax.checkpoint import metadata
from mixer_flax.eval import cli as eval_cli
from mixer_flax.transfer import __main__ as transfer_cli


@pytest.fixture(scope='module')
def ti4_checkpoint(tmp_path_factory, random_mixer_params):
  """A random Mixer-Ti/4 (16 px, 10 classes) with the trainer's metadata."""
  path = str(tmp_path_factory.mktemp('ckpt') / 'final.npz')
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  checkpoint.save_npz(path, random_mixer_params(model, 16))
  metadata.save(path, metadata.make(
      model_name='Mixer-Ti_4', classes=[f'digit {i}' for i in range(10)],
      dataset='sklearn_digits', image_size=16, eval_mode='resize', eval_resize=16))
  return path


# --- scripts/*.py and python -m mixer_flax.transfer ----------------------------------------

MISSING = '/nonexistent/final.npz'


@pytest.mark.parametrize('call', [
    lambda: eval_cli.evaluate_main(['--checkpoint', MISSING, '--dataset', 'sklearn_digits']),
    lambda: eval_cli.predict_main(['--checkpoint', MISSING, 'cat.jpg']),
    lambda: eval_cli.fewshot_main(['--checkpoint', MISSING, '--datasets', 'sklearn_digits']),
    lambda: checkpoint_cli.export_main(['--checkpoint', MISSING, '--output', '/tmp/x']),
    lambda: checkpoint_cli.export_timm_main([MISSING, '/tmp/x.safetensors']),
    lambda: checkpoint_cli.inspect_main([MISSING]),
    lambda: transfer_cli.main(['--suite=avg5', f'--pretrained={MISSING}', '--workdir=/tmp/x',
                               '--tasks=cifar10']),
], ids=['evaluate', 'predict', 'fewshot', 'export', 'export_timm', 'inspect', 'transfer'])
def test_missing_checkpoint_is_one_line_everywhere(call, capsys):
  assert one_line_error(capsys, call) == f'error: Checkpoint {MISSING} does not exist.'


def test_evaluate_at_another_resolution_names_the_flag(ti4_checkpoint, capsys):
  line = one_line_error(capsys, lambda: eval_cli.evaluate_main(
      ['--checkpoint', ti4_checkpoint, '--image_size', '20']))
  assert 'trained at 16 px' in line and 'image_size=20' in line and '--adapt_resolution' in line


def test_transfer_usage_errors_are_one_line(capsys):
  line = one_line_error(capsys, lambda: transfer_cli.main(['--suite=vtab1k', '--tasks=dtd']))
  assert line == 'error: --pretrained and --workdir are required (unless --check).'
  line = one_line_error(capsys, lambda: transfer_cli.main(
      ['--suite=vtab1k', '--pretrained=x.npz', '--workdir=w', '--set', 'batch']))
  assert "--set 'batch': expected KEY=VALUE" in line


def test_predict_and_export_carry_the_checkpoints_metadata(ti4_checkpoint, tmp_path, capsys):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = str(tmp_path / 'digit.png')
  Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(image)
  results = eval_cli.predict_main(['--checkpoint', ti4_checkpoint, '--top_k', '3', image])
  assert all(p['name'] == f'digit {p["index"]}' for p in results[0]['top_k'])
  assert 'Note:' not in capsys.readouterr().out  # names known: no "pass --dataset" note

  out = str(tmp_path / 'm.jax_export')
  assert checkpoint_cli.export_main(['--checkpoint', ti4_checkpoint, '--output', out,
                                     '--platforms', 'cpu']) == 0
  with open(out + '.json') as f:
    exported = json.load(f)
  assert exported['classes'][3] == 'digit 3' and exported['input_range'] == [-1.0, 1.0]
  assert (exported['eval_mode'], exported['eval_resize']) == ('resize', 16)
