"""The Avg-5 suite: ImageNet, CIFAR-10, CIFAR-100, Pets, Flowers (paper Tables 2 and 3).

Each task is experiments/finetune.py's recipe for that dataset (its one owner): the
learning rate is picked from {0.003, 0.01, 0.03, 0.06} (Appendix C) on the held-out part of
'train' that finetune.py defines (2% CIFAR, 10% Pets/Flowers, 1% ImageNet), then the run is
repeated with the `test` argument (all training data, real test split).
"""

from __future__ import annotations

AVG5_LRS = (0.003, 0.01, 0.03, 0.06)
# Avg-5 task (the tfds dataset) -> its column in the paper's tables.
AVG5_TASKS: dict[str, str] = {'imagenet2012': 'ImNet', 'cifar10': 'CIFAR-10',
                              'cifar100': 'CIFAR-100', 'oxford_iiit_pet': 'Pets',
                              'oxford_flowers102': 'Flowers'}


def finetune_arg(dataset: str, *, model_name: str, image_size: int, stage: str) -> str:
  """The `finetune.py:ARG` of one run ('val': minival split, 'test': real test split)."""
  if stage not in ('val', 'test'):
    raise ValueError(f"stage={stage!r}: expected 'val' or 'test'.")
  return f'{model_name},{dataset},{image_size}' + (',test' if stage == 'test' else '')

