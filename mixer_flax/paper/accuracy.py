"""Accuracy rows of Tables 2/3 and the CIFAR-10 table, evaluated from checkpoints.

Checkpoints live at `<checkpoint_dir>/<row key>/<dataset>.npz` (see `tables.AccuracyRow`);
a (row, metric) whose checkpoint or prepared tfds data is missing says why instead of
a number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from mixer_flax import checkpoint
from mixer_flax.eval import classification, inputs
from mixer_flax.paper import tables


def _dataset_missing(name: str, *, data_dir: str | None, manual_dir: str | None) -> str | None:
  """Why tfds dataset `name` cannot be read offline, or None if it can."""
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # noqa: BLE001  (unknown name, missing builder code)
    return f'tfds dataset {name!r} unavailable ({e})'
  if builder.is_prepared() or (manual_dir and name.startswith('imagenet2012')):
    return None
  return (f'tfds dataset {name!r} is not prepared in {builder.data_dir_root} '
          f'(prepare it, or pass --data_dir / --manual_dir)')


def evaluate_rows(rows, *, checkpoint_dir: str | None, data_dir: str | None,
                  manual_dir: str | None, batch: int) -> dict[tuple[str, str], float | str]:
  """Top-1 (%) of every (row, metric) whose checkpoint and data exist, else why not."""
  cache: dict[tuple[str, str, int, str], float | str] = {}

  def top1(row: tables.AccuracyRow, metric: str) -> float | str:
    dataset, split, stem = tables.METRIC_DATA[metric]
    if not checkpoint_dir:
      return 'no --checkpoint_dir given'
    path = os.path.join(checkpoint_dir, row.key, f'{stem}.npz')
    if not os.path.exists(path) and stem == 'imagenet2012' and row.released:
      released = os.path.join(checkpoint_dir, row.released)
      path = released if os.path.exists(released) else path
    if not os.path.exists(path):
      return f'checkpoint {path} missing'
    missing = _dataset_missing(dataset, data_dir=data_dir, manual_dir=manual_dir)
    if missing:
      return missing
    key = (path, dataset, row.image_size, row.eval_mode)
    if key not in cache:
      model, params, arch = checkpoint.load_model(path, image_size=row.image_size)
      config = inputs.eval_config(
          dataset=dataset, split=split, image_size=row.image_size, batch=batch,
          data_dir=data_dir, pp=dict(eval_mode=row.eval_mode), num_classes=arch['num_classes'])
      config.manual_dir = manual_dir
      result = classification.evaluate_params(config, model, params, progress=True)
      cache[key] = 100.0 * result['eval_accuracy']
    return cache[key]

  ours: dict[tuple[str, str], float | str] = {}
  for row in rows:
    for metric in row.paper:
      if metric == 'VTAB':  # a fine-tuning suite, not a checkpoint: see `transfer_results`
        ours[(row.key, metric)] = ('no VTAB-1k suite results: run python -m mixer_flax.transfer '
                                   f'--suite=vtab1k --paper_row={row.key} ... and pass its '
                                   'results.jsonl to --transfer_results')
        continue
      if metric != 'Avg5':
        ours[(row.key, metric)] = top1(row, metric)
        continue
      parts = {m: top1(row, m) for m in tables.AVG5_METRICS}
      bad = [f'{m}: {v}' for m, v in parts.items() if isinstance(v, str)]
      if not checkpoint_dir:
        bad = ['no --checkpoint_dir given']
      ours[(row.key, metric)] = ('Avg-5 needs all five fine-tuned checkpoints; ' + '; '.join(bad)
                                 if bad else sum(parts.values()) / len(parts))
  return ours


def accuracy_markdown(rows: Sequence[tables.AccuracyRow],
                      ours: dict[tuple[str, str], float | str]) -> str:
  """Markdown of paper vs ours for accuracy rows.

  Args:
    rows: the rows of one table.
    ours: `(row.key, metric) -> top-1 in %` or a string saying why it was not run.

  Returns:
    A Markdown table; each cell is `paper / ours`.
  """
  metrics = [m for m in ('ImNet', 'ReaL', 'Avg5', 'VTAB', 'CIFAR-10')
             if any(m in r.paper for r in rows)]
  lines = ['| pre-train / model | ' + ' | '.join(f'{m} paper | {m} ours' for m in metrics) + ' |',
           '|---|' + '---|---|' * len(metrics)]
  notes: list[str] = []
  for r in rows:
    cells = []
    for m in metrics:
      paper = r.paper.get(m)
      got = ours.get((r.key, m))
      if isinstance(got, str):
        notes.append(f'- {r.label}, {m}: {got}')
        got_s = f'not run [{len(notes)}]'
      else:
        got_s = '-' if got is None else f'{got:.2f}'
      cells.append(f'{"-" if paper is None else f"{paper:.2f}"} | {got_s}')
    lines.append(f'| {r.label} | ' + ' | '.join(cells) + ' |')
  if notes:
    lines += ['', 'Not run:'] + [f'[{i + 1}] {n[2:]}' for i, n in enumerate(notes)]
  return '\n'.join(lines)
