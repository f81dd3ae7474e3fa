"""`sklearn_digits`: scikit-learn's bundled hand-written digits as a tfds dataset.

The 1,797 real 8x8 grey-level digit images of `sklearn.datasets.load_digits`
(UCI "Optical Recognition of Handwritten Digits", test part), 10 classes. They
ship inside scikit-learn, so preparing this dataset never touches the network:
`download_and_prepare()` writes ordinary tfds TFRecord files into `data_dir`
and the dataset is then read exactly like ImageNet.

Pixels: scikit-learn stores counts 0..16; they are mapped to uint8 by
`round(v * 255 / 16)` and stored as single-channel 8x8 PNG images (the input
pipeline decodes every image to RGB).

Splits (fixed, deterministic): a stratified split with
`sklearn.model_selection.train_test_split(test_size=360, stratify=labels,
random_state=0)`: 'train' has 1,437 examples and 'test' 360 (35-37 per class).
Examples keep their index in `load_digits` as `id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

NUM_EXAMPLES = 1797
NUM_TEST = 360
SPLIT_SEED = 0


def digits_split() -> dict[str, np.ndarray]:
  """The fixed split: indices into `load_digits` for 'train' and 'test'.

  Returns:
    {'train': int [1437], 'test': int [360]}, each sorted ascending.
  """
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  labels = load_digits().target
  train, test = train_test_split(
      np.arange(len(labels)), test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED)
  return {'train': np.sort(train), 'test': np.sort(test)}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 hand-written digits (1,797 images, 10 classes)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 1,437 / 360 train / test split (random_state=0).'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1), encoding_format='png'),
            'label': tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
            'id': np.int32,
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    return {name: self._generate_examples(idx) for name, idx in digits_split().items()}

  def _generate_examples(self, indices: np.ndarray) -> Iterator[tuple[int, dict[str, Any]]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in indices:
      yield int(i), {'image': images[i], 'label': int(digits.target[i]), 'id': int(i)}
