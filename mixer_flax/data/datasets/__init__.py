"""tfds dataset builders shipped with mixer_flax.

Importing this package registers them with tfds (by class name), so that
`tfds.builder('sklearn_digits', data_dir=...)` works like any catalogue dataset:

  sklearn_digits  scikit-learn's bundled 8x8 digits, prepared offline on first use.
  imagenet21k     ImageNet-21k (fall 2011) prepared from the archive in manual_dir
                  (only if the installed tfds does not define its own imagenet21k).
"""

import tensorflow_datasets as tfds

from mixer_flax.data.datasets.sklearn_digits import SklearnDigits

if 'imagenet21k' not in tfds.list_builders(with_community_datasets=False):
  from mixer_flax.data.datasets.imagenet21k import Imagenet21k  # noqa: F401

__all__ = ['SklearnDigits']
