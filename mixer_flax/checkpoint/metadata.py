"""What a checkpoint needs to be used: its class names and input preprocessing, next to it.

The trainer writes `final.json` next to `final.npz` (the sidecar of `X.npz` is `X.json`), e.g.

    {"format": "mixer_flax.checkpoint.metadata/1", "model_name": "Mixer-Ti_4",
     "num_classes": 10, "classes": ["0", ..., "9"], "dataset": "sklearn_digits",
     "image_size": 16, "value_range": [-1.0, 1.0], "eval_mode": "resize", "eval_resize": 16}

A sidecar file, not extra arrays in the `.npz`: `load_npz` and the official loaders
(vit_jax / big_vision `recover_tree` of every array, timm's `.npz` reader) take each array of
the archive for a float parameter, and a string array would break them. `scripts/predict.py`
and `scripts/evaluate.py` read it by default; the exports carry it (`scripts/export.py`'s
`.json`, `scripts/export_timm.py`'s safetensors metadata). Checkpoints without it (the
released ones) work as before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from mixer_flax import fileio

FORMAT = 'mixer_flax.checkpoint.metadata/1'
VALUE_RANGE = (-1.0, 1.0)  # pixels scaled as x / 127.5 - 1 (data/on_device.scale_images)


def sidecar(path: str) -> str:
  """The metadata file of checkpoint `path`: 'final.npz' -> 'final.json'."""
  return os.path.splitext(path)[0] + '.json'


def make(*, model_name: str, classes: Sequence[str], dataset: str, image_size: int,
         eval_mode: str, eval_resize: int) -> dict[str, Any]:
  """The metadata of a checkpoint trained on `dataset` (classes in head order)."""
  return dict(format=FORMAT, model_name=model_name, num_classes=len(classes),
              classes=[str(c) for c in classes], dataset=dataset, image_size=int(image_size),
              value_range=list(VALUE_RANGE), eval_mode=eval_mode, eval_resize=int(eval_resize))


def for_config(config: Any, classes: Sequence[str]) -> dict[str, Any]:
  """`make` for a trainer config (`classes`: the dataset's names; none: the class indices)."""
  names = [str(c) for c in classes]  # head columns the dataset does not name: their indices
  names += [str(i) for i in range(len(names), config.num_classes)]
  return make(model_name=config.model_name, dataset=config.dataset, classes=names,
              image_size=config.image_size, eval_mode=config.pp.eval_mode,
              eval_resize=config.pp.eval_resize)


def save(path: str, meta: dict[str, Any]) -> None:
  """Writes the sidecar of checkpoint `path` (whole or not at all)."""
  fileio.write_atomic(sidecar(path), json.dumps(meta, indent=1) + '\n',
                      what='the checkpoint metadata')


def load(path: str) -> dict[str, Any] | None:
  """The metadata of a local checkpoint `path`, or None (no sidecar, or a remote file).

  Raises:
    ValueError: a sidecar that is not this module's JSON (naming the file).
  """
  if not fileio.is_local(path) or not fileio.exists(sidecar(path)):
    return None
  try:
    with fileio.open_file(sidecar(path)) as f:
      meta = json.load(f)
  except ValueError as e:
    raise ValueError(f'{sidecar(path)} (the metadata of {path}) is not valid JSON ({e}); '
                     'delete it to use the checkpoint without class names.') from e
  if not isinstance(meta, dict) or meta.get('format') != FORMAT:
    return None  # another tool's file of the same name: not ours to interpret
  return meta
