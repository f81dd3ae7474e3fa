"""Accuracy rows of Tables 2/3 and the CIFAR-10 table, evaluated from checkpoints.

Checkpoints live at `<checkpoint_dir>/<row key>/<dataset>.npz` (see `tables.AccuracyRow`);
a (row, metric) whose checkpoint or prepared tfds data is missing says why instead of
a number.
"""

from __future__ import annotations

import os

from mixer_flax.eval import classification
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
      model, params, arch = classification.load_model(path, image_size=row.image_size)
      config = classification.eval_config(
          dataset=dataset, split=split, image_size=row.image_size, model_name=arch['model_name'],
          eval_mode=row.eval_mode, batch=batch, data_dir=data_dir,
          num_classes=arch['num_classes'])
      config.manual_dir = manual_dir
      result = classification.evaluate_params(config, model, params, progress=True)
      cache[key] = 100.0 * result['eval_accuracy']
    return cache[key]

  ours: dict[tuple[str, str], float | str] = {}
  for row in rows:
    for metric in row.paper:
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
