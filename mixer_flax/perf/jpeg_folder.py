"""A reproducible ImageNet-like JPEG folder for input-pipeline benchmarks.

`write_jpeg_folder(root)` fills an empty `root` with `train/<class>/*.jpg` and
`test/<class>/*.jpg` (the `image_folder` dataset layout): 1,200 RGB JPEGs of random
350-520 px sides at quality 90, about 42 KiB each (smooth colour fields plus pixel
noise, so decoding costs what a photo of that size and file size costs). A folder that
already holds files is used as it is.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

NUM_IMAGES = 1200
NUM_CLASSES = 10
TEST_IMAGES = 200


def _image(rs: np.random.RandomState) -> Image.Image:
  h, w = rs.randint(350, 521, 2)
  coarse = Image.fromarray(rs.randint(0, 256, (8, 8, 3)).astype(np.uint8))
  base = np.asarray(coarse.resize((int(w), int(h)), Image.BICUBIC), np.float32)
  return Image.fromarray(np.clip(base + rs.normal(0, 5.0, base.shape), 0, 255).astype(np.uint8))


def write_jpeg_folder(root: str, *, num_images: int = NUM_IMAGES, seed: int = 0) -> str:
  """Writes the folder (module doc) unless `root` already has files; returns `root`."""
  if os.path.isdir(root) and os.listdir(root):
    return root
  rs = np.random.RandomState(seed)
  test = min(TEST_IMAGES, num_images // 6)
  for i in range(num_images):
    split = 'test' if i < test else 'train'
    directory = os.path.join(root, split, f'class_{i % NUM_CLASSES:02d}')
    os.makedirs(directory, exist_ok=True)
    _image(rs).save(os.path.join(directory, f'{i:05d}.jpg'), 'JPEG', quality=90)
  return root


def folder_stats(root: str) -> tuple[int, float]:
  """(number of .jpg files, mean size in KiB) under `root`."""
  sizes = [os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root)
           for f in files if f.endswith('.jpg')]
  return len(sizes), (sum(sizes) / len(sizes) / 1024 if sizes else 0.0)
