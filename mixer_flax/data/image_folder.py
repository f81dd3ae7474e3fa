"""Image folders `root/<split>/<class>/<image>` as a dataset with tfds split strings.

Layout: every sub-directory of `root` holding class sub-directories is a split
('train', 'test', ...); classes are the sorted union of class directory names
over all splits (label = index in that list). Images: files ending in .jpg,
.jpeg, .png, .gif or .bmp (any case); other files are ignored. Grey-level,
grey+alpha, palette and RGBA images are converted to RGB when decoded (alpha is
dropped), 16-bit PNGs are scaled to 8 bits.

Order: each split is listed in sorted path order and then permuted once with a
fixed seed (`PERMUTATION_SEED`), so slices such as 'train[:90%]' and
per-process shards are class-balanced samples, and identical on every host.

Errors are raised before TensorFlow reads anything: a class directory without
images, or a file that does not decode (checked, with PIL, for the files this
process reads; JPEGs are checked with a fast reduced-size decode), name the
offending path.
"""

from __future__ import annotations

import concurrent.futures
import os
import types
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
FORMATS = ('JPEG', 'PNG', 'GIF', 'BMP')  # What tf.io.decode_image reads.
PERMUTATION_SEED = 0


def absolute_ranges(split: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
  """Resolves a tfds split string ('train[:90%]+test') to [(split, start, stop)]."""
  infos = {k: types.SimpleNamespace(num_examples=n) for k, n in sizes.items()}
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
  except (ValueError, AssertionError, KeyError) as e:
    raise ValueError(f'Bad split {split!r} for the image folder splits {sizes}: {e}') from e
  out = []
  for ins in instructions:
    start, stop, _ = slice(ins.from_, ins.to).indices(sizes[ins.splitname])
    out.append((ins.splitname, start, max(start, stop)))
  return out


def even_share(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of process_index's share of n items (the first n % count get one more).

  The same division as `tfds.even_splits(..., drop_remainder=False)`.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in [0, {process_count}).')
  base, extra = divmod(n, process_count)
  start = process_index * base + min(process_index, extra)
  return start, start + base + int(process_index < extra)


def _parallel_map(fn: Callable, items: Sequence) -> list:
  workers = max(1, min(8, os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(fn, items))


def check_image(path: str) -> None:
  """Raises ValueError naming `path` if it is not a decodable JPEG/PNG/GIF/BMP image."""
  from PIL import Image

  try:
    with Image.open(path) as image:
      if image.format not in FORMATS:
        raise ValueError(f'format {image.format} is not one of {FORMATS}')
      if image.format == 'JPEG':
        image.draft('RGB', (1, 1))  # Decode at 1/8 scale: same entropy decoding, cheaper.
      image.load()
  except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, ValueError, ...).
    raise ValueError(
        f'Image folder: cannot decode {path}: {e}. Replace or delete this file (supported: '
        'JPEG, PNG, GIF, BMP; grey-level, palette and RGBA images are converted to RGB).') from e


class ImageFolder:
  """Lists and validates `root/<split>/<class>/<image>` (see the module doc)."""

  def __init__(self, root: str):
    if not os.path.isdir(root):
      raise FileNotFoundError(f'config.folder_root={root} is not a directory.')
    split_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                        and any(e.is_dir() for e in os.scandir(os.path.join(root, d))))
    if not split_dirs:
      raise FileNotFoundError(
          f'config.folder_root={root} has no <split>/<class>/ sub-directories; expected e.g. '
          f'{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg.')
    self.root = root
    self.classes = sorted({e.name for s in split_dirs
                           for e in os.scandir(os.path.join(root, s)) if e.is_dir()})
    self._paths: dict[str, np.ndarray] = {}
    self._labels: dict[str, np.ndarray] = {}
    for split in split_dirs:
      paths, labels = [], []
      for label, name in enumerate(self.classes):
        class_dir = os.path.join(root, split, name)
        if not os.path.isdir(class_dir):
          continue
        files = sorted(f for f in os.listdir(class_dir) if f.lower().endswith(EXTENSIONS))
        if not files:
          raise ValueError(f'Image folder: class directory {class_dir} holds no '
                           f'{"/".join(EXTENSIONS)} files. Add images or remove the directory.')
        paths += [os.path.join(class_dir, f) for f in files]
        labels += [label] * len(files)
      order = np.random.RandomState(PERMUTATION_SEED).permutation(len(paths))
      self._paths[split] = np.asarray(paths, dtype=object)[order]
      self._labels[split] = np.asarray(labels, dtype=np.int64)[order]
    self._checked: set[str] = set()

  @property
  def sizes(self) -> dict[str, int]:
    """Examples per split directory."""
    return {s: len(p) for s, p in self._paths.items()}

  def shard(self, split: str, process_index: int,
            process_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Paths (str [n]) and labels (int64 [n]) of one process's share of a split string."""
    ranges = absolute_ranges(split, self.sizes)
    paths = np.concatenate([self._paths[s][a:b] for s, a, b in ranges])
    labels = np.concatenate([self._labels[s][a:b] for s, a, b in ranges])
    start, stop = even_share(len(paths), process_index, process_count)
    return paths[start:stop], labels[start:stop]

  def records(self, split: str, process_index: int, process_count: int) -> tf.data.Dataset:
    """Validated records {'image': path, 'label': int64} of one process's share."""
    paths, labels = self.shard(split, process_index, process_count)
    _parallel_map(check_image, [p for p in paths if p not in self._checked])
    self._checked.update(paths)
    return tf.data.Dataset.from_tensor_slices(
        {'image': paths.astype(str), 'label': labels})
