"""Class names for predictions, from what ships offline with installed packages.

* ImageNet-1k: human-readable names from the ImageNet label list that tfds
  packages (`tensorflow_datasets.datasets.siscore.labels.IMAGENET_LABELS_LIST`,
  standard class order, 'tench, Tinca tinca' first) and WordNet ids from the
  `imagenet2012` builder's `labels.txt` (same order). Nothing is downloaded.
* ImageNet-21k (21,843 classes, the sorted WordNet ids of the fall11 release, as
  the released heads and `data/datasets/imagenet21k.py` order them): the synset
  list and WordNet lemmas that timm ships as package data
  (`timm/data/_info/imagenet21k_goog_synsets.txt`, `imagenet_synset_to_lemma.txt`),
  read without importing timm. Without timm (tfds ships no 21k list) classes
  are indices ('imagenet21k class 1234') unless the user passes a names file.
* Any other dataset: `data.pipeline.get_dataset_info(config).label_names`.
"""

from __future__ import annotations

import importlib.util
import os

IMAGENET1K_CLASSES = 1000
IMAGENET21K_CLASSES = 21843
IMAGENET21K_NOTE = ('ImageNet-21k class names come from timm\'s package data, and timm is not '
                    'installed; classes are shown as indices (pip install --no-deps timm, or '
                    'name them with --labels_file, one name per line).')


def imagenet1k_names() -> list[str]:
  """The 1000 ImageNet-1k class names in the standard (tfds label) order."""
  from tensorflow_datasets.datasets.siscore import labels

  names = list(labels.IMAGENET_LABELS_LIST)
  if len(names) != IMAGENET1K_CLASSES:
    raise RuntimeError(f'tfds ImageNet label list has {len(names)} entries, expected 1000.')
  return names


def imagenet1k_synsets() -> list[str]:
  """The 1000 WordNet ids (n01440764, ...) of the tfds `imagenet2012` builder."""
  import tensorflow_datasets as tfds

  path = os.path.join(os.path.dirname(tfds.__file__), 'datasets', 'imagenet2012', 'labels.txt')
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def _timm_info_dir() -> str | None:
  """The `data/_info` directory of timm (found without importing timm, which imports torch)."""
  spec = importlib.util.find_spec('timm')
  if spec is None or not spec.submodule_search_locations:
    return None
  path = os.path.join(list(spec.submodule_search_locations)[0], 'data', '_info')
  return path if os.path.isdir(path) else None


def imagenet21k_synsets() -> list[str] | None:
  """The 21,843 WordNet ids of ImageNet-21k (fall11) in sorted order, from timm's data; or None."""
  info = _timm_info_dir()
  if info is None:
    return None
  synsets = read_names_file(os.path.join(info, 'imagenet21k_goog_synsets.txt'))
  if len(synsets) != IMAGENET21K_CLASSES or synsets != sorted(synsets):
    raise RuntimeError(f'{info}: imagenet21k_goog_synsets.txt has {len(synsets)} entries, not the '
                       f'{IMAGENET21K_CLASSES} sorted WordNet ids of ImageNet-21k.')
  return synsets


def imagenet21k_names() -> list[str] | None:
  """Lemmas ('tabby, tabby cat') of the ImageNet-21k classes in head order, or None without timm."""
  synsets = imagenet21k_synsets()
  if synsets is None:
    return None
  with open(os.path.join(_timm_info_dir(), 'imagenet_synset_to_lemma.txt')) as f:
    lemmas = dict(line.rstrip('\n').split('\t', 1) for line in f if '\t' in line)
  return [lemmas.get(s, s) for s in synsets]


def read_names_file(path: str) -> list[str]:
  """One class name per line."""
  with open(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]


def class_names(num_classes: int, *, labels_file: str | None = None,
                dataset_names: list[str] | None = None) -> tuple[list[str], str | None]:
  """Names for a `num_classes` head.

  Args:
    num_classes: head width of the checkpoint.
    labels_file: optional file with one name per line (wins over everything).
    dataset_names: label names of the dataset the checkpoint was trained on.

  Returns:
    `(names, note)`: `num_classes` strings and an optional note for the user.
  """
  if labels_file:
    names = read_names_file(labels_file)
  elif dataset_names is not None:
    names = list(dataset_names)
  elif num_classes == IMAGENET1K_CLASSES:
    names = imagenet1k_names()
  elif num_classes == IMAGENET21K_CLASSES:
    names = imagenet21k_names()
    if names is None:
      return [f'imagenet21k class {i}' for i in range(num_classes)], IMAGENET21K_NOTE
  else:
    return [f'class {i}' for i in range(num_classes)], (
        f'A {num_classes}-class head: pass --dataset (the dataset it was trained on) or '
        '--labels_file for class names.')
  if len(names) != num_classes:
    raise ValueError(f'{len(names)} class names for a {num_classes}-class head: check '
                     '--dataset / --labels_file.')
  return names, None


def head_order(checkpoint_classes: list[str], dataset_classes: list[str], *, checkpoint: str,
               dataset: str) -> list[int] | None:
  """Head columns in the dataset's class order, or None when the orders already agree.

  Classes are matched by name (an image folder's are its sorted directory names, which need
  not be the order the checkpoint was trained in).

  Raises:
    ValueError: the dataset has classes the checkpoint does not (naming the difference).
  """
  if list(dataset_classes) == list(checkpoint_classes)[:len(dataset_classes)]:
    return None
  index = {name: i for i, name in enumerate(checkpoint_classes)}
  unknown = [c for c in dataset_classes if c not in index]
  if unknown or len(set(dataset_classes)) != len(dataset_classes):
    unused = sorted(set(checkpoint_classes) - set(dataset_classes))
    raise ValueError(
        f'The classes of {dataset} differ from those {checkpoint} was trained on: only in the '
        f'data: {", ".join(map(str, unknown)) or "-"}; only in the checkpoint: '
        f'{", ".join(unused[:20]) or "-"}{" ..." if len(unused) > 20 else ""}. Evaluate it on '
        'data with its classes (names: the checkpoint\'s .json), or fine-tune it first.')
  order = [index[c] for c in dataset_classes]
  return order + [i for i in range(len(checkpoint_classes)) if i not in set(order)]
