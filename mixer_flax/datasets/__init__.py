"""tfds dataset builders shipped with mixer_flax.

Importing this package registers them with tfds (by class name), so that
`tfds.builder('sklearn_digits', data_dir=...)` works like any catalogue dataset.
"""

from mixer_flax.datasets.sklearn_digits import SklearnDigits

__all__ = ['SklearnDigits']
