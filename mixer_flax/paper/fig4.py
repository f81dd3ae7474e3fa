"""Fig. 4-style plot of the permutation experiment (section 3.4) from its results file.

Reads `<out>/table_permutation.json` of `scripts/reproduce_tables.py --table permutation`
and, when they are beside it, the runs it made (`<out>/permutation/<variant>_<N>steps/`,
`..._same_start_<N>steps/`) and their input folders (`<out>/permutation/data/<variant>/`):

* top (if the folders exist): one test image as each variant's model saw it (paper: example
  inputs);
* bottom left (if the runs exist): training loss vs step of every run (paper: linear 5-shot
  ImageNet top-1 during training; our runs evaluate once, at the end);
* bottom right: final test top-1 of every variant, the numbers of the results file.
"""

from __future__ import annotations

import glob
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from mixer_flax.paper.permutation import VARIANTS

LABELS = {'original': 'original', 'patch_pixel': 'patch + pixel perm.',
          'global_pixel': 'global pixel perm.',
          'original_same_start': 'original, start W0',
          'patch_pixel_same_start': 'patch + pixel, start perm(W0)'}
COLOURS = {'original': 'C0', 'patch_pixel': 'C2', 'global_pixel': 'C3'}

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn (`--help` answers at once)
  from matplotlib.figure import Figure


def load_results(path: str) -> dict[str, Any]:
  """The results file, checked to hold at least one variant's accuracy."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'Permutation results {path} do not exist; run '
                            '`python scripts/reproduce_tables.py --table permutation` first '
                            '(it writes <out>/table_permutation.json).')
  with open(path) as f:
    results = json.load(f)
  if not isinstance(results, dict) or not any(k in results for k in VARIANTS):
    raise ValueError(f'{path}: holds no permutation results (none of the keys {VARIANTS}); '
                     'expected the table_permutation.json of reproduce_tables.py.')
  return results


def find_runs(root: str, *, steps: int | None) -> dict[str, str]:
  """`{run name: metrics.jsonl}` of the runs under `root`.

  With `steps` unknown (an older results file) a name counts only if it has a single run.
  """
  runs = {}
  for name in LABELS:
    pattern = f'{name}_{steps}steps' if steps else f'{name}_[0-9]*steps'
    found = sorted(glob.glob(os.path.join(root, pattern, 'metrics.jsonl')))
    if len(found) == 1:
      runs[name] = found[0]
  return runs


def read_losses(path: str) -> tuple[np.ndarray, np.ndarray]:
  """`(steps, train_loss)` of a run's metrics.jsonl (rows without a loss skipped)."""
  steps, losses = [], []
  with open(path) as f:
    for line in f:
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # A torn last line of an interrupted run.
        continue
      if 'train_loss' in row:
        steps.append(row['step'])
        losses.append(row['train_loss'])
  return np.asarray(steps), np.asarray(losses, np.float64)


def example_inputs(data_root: str) -> dict[str, np.ndarray]:
  """The first test image of the original folder (sorted paths), and that file in the others.

  Returns:
    `{variant: (H, W) uint8}` as stored, i.e. what each variant's model was fed.
  """
  from PIL import Image

  base = os.path.join(data_root, 'original', 'test')
  files = sorted(glob.glob(os.path.join(base, '*', '*.png')))
  if not files:
    return {}
  rel = os.path.relpath(files[0], base)
  out = {}
  for kind in VARIANTS:
    path = os.path.join(data_root, kind, 'test', rel)
    if os.path.exists(path):
      with Image.open(path) as image:
        out[kind] = np.asarray(image)
  return out


def permutation_figure(path: str) -> Figure:
  """The Fig. 4-style figure of results file `path` (module docstring)."""
  results = load_results(path)
  root = os.path.join(os.path.dirname(os.path.abspath(path)), 'permutation')
  steps = results.get('steps')
  runs = find_runs(root, steps=steps)
  examples = example_inputs(os.path.join(root, 'data'))
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,redefined-outer-name

  fig = Figure(figsize=(10, 6.5 if examples else 4))
  gs = fig.add_gridspec(2 if examples else 1, 6, height_ratios=[1, 1.6] if examples else None,
                        hspace=0.35, wspace=0.8)
  bottom = 1 if examples else 0
  for i, (kind, image) in enumerate(examples.items()):
    ax = fig.add_subplot(gs[0, 2 * i:2 * i + 2])
    ax.imshow(image, cmap='gray', vmin=0, vmax=255, interpolation='nearest')
    ax.set(xticks=[], yticks=[], title=LABELS[kind], label=f'input/{kind}')
  if runs:
    ax = fig.add_subplot(gs[bottom, :3])
    for name, metrics in runs.items():
      kind = name.replace('_same_start', '')
      x, y = read_losses(metrics)
      ax.plot(x, y, color=COLOURS[kind], linestyle='--' if name != kind else '-',
              label=LABELS[name])
    ax.set(yscale='log', xlabel='training step', ylabel='training loss',
           title='Training loss')
    ax.legend(fontsize=7)
  names = [n for n in LABELS if isinstance(results.get(n), (int, float))]
  ax = fig.add_subplot(gs[bottom, 3:] if runs else gs[bottom, :])
  heights = [100 * float(results[n]) for n in names]
  bars = ax.bar(range(len(names)), heights,
                color=[COLOURS[n.replace('_same_start', '')] for n in names],
                hatch=None, label='test top-1')
  for n, bar in zip(names, bars):
    bar.set_hatch('//' if n.endswith('_same_start') else None)
  ax.bar_label(bars, fmt='%.1f%%', fontsize=7)
  ax.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=20, ha='right',
                fontsize=7)
  ax.set(ylabel='test top-1 (%)', ylim=(0, 105), title='Test accuracy')
  fig.suptitle('Invariance to input permutations (paper section 3.4, Fig. 4)'
               + (f', {steps} steps per run' if steps else ''), fontsize=10)
  return fig
