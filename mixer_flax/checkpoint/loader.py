"""A checkpoint and the model that runs it: the architecture is read off the parameters."""

from __future__ import annotations

import jax
import numpy as np

from mixer_flax import models
from mixer_flax.checkpoint.finetune import restore_params
from mixer_flax.checkpoint.formats import load_params
from mixer_flax.checkpoint.info import infer_architecture


def load_model(path: str, *, image_size: int | None = None, num_classes: int | None = None,
               sha256: str | None = None, adapt_resolution: bool = False):
  """Loads a checkpoint (`.npz`, or a timm `.safetensors`/`.pth`) and builds the matching model.

  Args:
    path: the checkpoint (see `load_params`).
    image_size: input side; by default the checkpoint's resolution.
    num_classes: if given, the head must have this many classes.
    sha256: expected SHA-256 of the file.
    adapt_resolution: allow an `image_size` other than the checkpoint's: the
      token-mixing MLPs are resampled to its token grid (`checkpoint.adapt`).

  Returns:
    `(model, params, arch)` with `arch` from `checkpoint.info.infer_architecture`.
  """
  params = load_params(path, sha256=sha256)
  arch = infer_architecture(params, image_size=None if adapt_resolution else image_size,
                            source=path)
  if num_classes is not None and num_classes != arch['num_classes']:
    raise ValueError(f'{path} has a {arch["num_classes"]}-class head but the dataset has '
                     f'{num_classes} classes; fine-tune it first (mixer_flax.main).')
  model = models.create_model(arch['model_name'], num_classes=arch['num_classes'],
                              **arch['overrides'])
  if adapt_resolution and image_size and image_size != arch['image_size']:
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), images)['params']
    params = restore_params(restored=params, init_params=shapes, source=path)
    arch = dict(arch, image_size=image_size)
  return model, params, arch
