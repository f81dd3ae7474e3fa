"""The one way to build the config an evaluation reads its data with."""

from __future__ import annotations

from typing import Any

import ml_collections

from mixer_flax import config as config_lib

# tfds label feature of datasets whose labels are not in 'label'.
LABEL_KEYS = {'imagenet2012_real': 'real_label'}


def eval_config(run: ml_collections.ConfigDict | None = None, *, dataset: str | None = None,
                split: str | None = None, image_size: int | None = None,
                batch: int | None = None, data_dir: str | None = None,
                folder_root: str | None = None, pp: dict[str, Any] | None = None,
                num_classes: int | None = None) -> ml_collections.ConfigDict:
  """`run` (default `config.base_config()`) with the evaluation's data fields replaced.

  Args:
    run: the run config the evaluation belongs to (a copy is changed).
    dataset: another dataset (its label key and class count are then its own).
    split: the split to score (`eval_split`).
    image_size: the input side; `pp.eval_resize` follows it (8/7) unless `pp` sets it.
    batch: the global eval batch (`batch_eval`).
    data_dir, folder_root: where the dataset is.
    pp: `config.pp` keys to change (eval_mode, eval_resize).
    num_classes: the head's class count (None: the dataset's).
  """
  c = config_lib.base_config() if run is None else ml_collections.ConfigDict(run.to_dict())
  if dataset is not None and dataset != c.dataset:
    c.dataset, c.label_key, c.record_fn = dataset, LABEL_KEYS.get(dataset, 'label'), None
    c.num_classes = None
  if image_size is not None:
    c.image_size = image_size
    c.pp.eval_resize = config_lib.eval_resize_for(image_size)
  for key, value in (('eval_split', split), ('batch_eval', batch), ('data_dir', data_dir),
                     ('folder_root', folder_root), ('num_classes', num_classes)):
    if value is not None:
      c[key] = value
  c.pp.update(dict(pp or {}))
  return c
