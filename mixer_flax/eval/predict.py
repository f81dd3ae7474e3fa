"""Top-k classes of image files: eval preprocessing, softmax ranking, class names."""

from __future__ import annotations

import os

import jax
import numpy as np


def load_images(paths: list[str], *, image_size: int, eval_mode: str,
                eval_resize: int) -> np.ndarray:
  """Decodes and preprocesses image files like the eval pipeline.

  Returns:
    float32 `(N, image_size, image_size, 3)` in [-1, 1].
  """
  import tensorflow as tf

  from mixer_flax.data import on_device, preprocessing

  out = []
  for path in paths:
    if not os.path.exists(path):
      raise FileNotFoundError(f'Image file {path!r} does not exist.')
    image = preprocessing.eval_image(tf.io.read_file(path), image_size=image_size,
                                     mode=eval_mode, eval_resize=eval_resize)
    out.append(np.asarray(on_device.scale_images(image.numpy())))
  return np.stack(out)


def top_k(logits: np.ndarray, names: list[str], k: int) -> list[list[dict]]:
  """Per image the k most probable classes: dicts(index, name, prob), most probable first."""
  probs = np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))
  order = np.argsort(-probs, axis=-1, kind='stable')[:, :k]
  return [[dict(index=int(i), name=names[i], prob=float(p[i])) for i in row]
          for row, p in zip(order, probs)]


def dataset_label_names(dataset: str | None, *, data_dir: str | None = None,
                        folder_root: str | None = None) -> list[str] | None:
  """Label names of `dataset` via the input pipeline's dataset info (None without it)."""
  if not dataset:
    return None
  from mixer_flax.data import pipeline
  from mixer_flax.eval import inputs

  config = inputs.eval_config(dataset=dataset, data_dir=data_dir, folder_root=folder_root)
  config.train_split, config.eval_split = 'train', 'test'
  return list(pipeline.get_dataset_info(config).label_names)
