r"""Paper section 3.4 / Fig. 4 on digits: original vs patch+pixel vs global pixel permutation.

The digits config (`experiments/digits.py`: Mixer-Ti_4, 16x16 inputs, S = 16 tokens) trained
on an image folder of the 1,797 sklearn digits, upscaled 2x by pixel repetition and permuted
(`mixer_flax/paper/permutation_experiment.py`), with plain resize preprocessing (no flip /
crop), so the fixed permutation is exactly what the model sees. The folders are written on
first use under `workdirs/permutation/data/<variant>`.

Commands (one per variant; or all three and a table: scripts/reproduce_tables.py --table
permutation):
  python -m mixer_flax.main --config=experiments/permutation.py:original \
      --workdir=workdirs/permutation/original
  python -m mixer_flax.main --config=experiments/permutation.py:patch_pixel \
      --workdir=workdirs/permutation/patch_pixel
  python -m mixer_flax.main --config=experiments/permutation.py:global_pixel \
      --workdir=workdirs/permutation/global_pixel

Arguments: `permutation.py:<variant>[:<total_steps>]`, variant in original, patch_pixel,
global_pixel.
"""

import os

import ml_collections

from mixer_flax import config as config_lib
from mixer_flax.paper import permutation_experiment

DATA_ROOT = os.path.join('workdirs', 'permutation', 'data')


def base_config(steps: str | None = None) -> ml_collections.ConfigDict:
  """experiments/digits.py's config (optionally with `total_steps=steps`)."""
  digits = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'digits.py')
  return config_lib.load_experiment(f'{digits}:{steps}' if steps else digits)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The config of one variant: `arg` = '<variant>[:<total_steps>]' (`config.parse_arg`)."""
  a = config_lib.parse_arg(arg, positional=('variant', 'total_steps'), variant='original',
                           total_steps=0)
  steps = str(a['total_steps']) if a['total_steps'] else None
  return permutation_experiment.experiment_config(base_config(steps), kind=a['variant'],
                                                  data_root=DATA_ROOT)
