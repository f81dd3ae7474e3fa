"""The paper's numbers, as published: Table 1, throughput, and the accuracy rows of Tables 2-3.

Plain data. Ours are measured elsewhere: Table 1 in `table1.py`, throughput in
`throughput.py`, accuracy from checkpoints in `accuracy.py`.
"""

from __future__ import annotations

import dataclasses

# Table 1 of the paper (params at 224 px, without head, in millions).
PAPER_TABLE1: dict[str, dict[str, int]] = {
    'Mixer-S_32': dict(blocks=8, patch=32, C=512, S=49, D_C=2048, D_S=256, params_M=19),
    'Mixer-S_16': dict(blocks=8, patch=16, C=512, S=196, D_C=2048, D_S=256, params_M=18),
    'Mixer-B_32': dict(blocks=12, patch=32, C=768, S=49, D_C=3072, D_S=384, params_M=60),
    'Mixer-B_16': dict(blocks=12, patch=16, C=768, S=196, D_C=3072, D_S=384, params_M=59),
    'Mixer-L_32': dict(blocks=24, patch=32, C=1024, S=49, D_C=4096, D_S=512, params_M=206),
    'Mixer-L_16': dict(blocks=24, patch=16, C=1024, S=196, D_C=4096, D_S=512, params_M=207),
    'Mixer-H_14': dict(blocks=32, patch=14, C=1280, S=256, D_C=5120, D_S=640, params_M=431),
}
TABLE1_COLUMNS = ('blocks', 'patch', 'C', 'S', 'D_C', 'D_S', 'params_M')

# Inference throughput, images/sec/core on TPU-v3 at 224 px (Tables 2 and 3).
PAPER_IMG_PER_SEC_CORE: dict[str, float] = {
    'Mixer-S_32': 11489, 'Mixer-B_32': 4208, 'Mixer-S_16': 3994, 'Mixer-B_16': 1384,
    'Mixer-L_32': 1314, 'Mixer-L_16': 419, 'Mixer-H_14': 194,
}
# The same at 448 px (Table 3, ImageNet-21k L/16 fine-tuned at 448).
PAPER_IMG_PER_SEC_CORE_448: dict[str, float] = {'Mixer-L_16': 105}
# ImageNet top-1 after JFT-300M pre-training and fine-tuning at 224 (Table 3 / Fig. 3).
PAPER_JFT_TOP1: dict[str, float] = {
    'Mixer-S_32': 68.70, 'Mixer-B_32': 75.53, 'Mixer-S_16': 73.83, 'Mixer-B_16': 80.00,
    'Mixer-L_32': 80.67, 'Mixer-L_16': 84.82, 'Mixer-H_14': 86.32,
}
PAPER_VARIANTS = tuple(PAPER_TABLE1)


# ---------------------------------------------------------------------------
# Accuracy rows (Tables 2 and 3, CIFAR-10 reference fine-tuning, SAM / GSAM Mixers).

# Evaluation data of each metric: (tfds name, split, checkpoint file stem).
# ReaL scores the ImageNet-fine-tuned checkpoint on the ReaL relabelling.
METRIC_DATA: dict[str, tuple[str, str, str]] = {
    'ImNet': ('imagenet2012', 'validation', 'imagenet2012'),
    'ReaL': ('imagenet2012_real', 'validation', 'imagenet2012'),
    'CIFAR-10': ('cifar10', 'test', 'cifar10'),
    'CIFAR-100': ('cifar100', 'test', 'cifar100'),
    'Pets': ('oxford_iiit_pet', 'test', 'oxford_iiit_pet'),
    'Flowers': ('oxford_flowers102', 'test', 'oxford_flowers102'),
}
# Avg-5 = mean top-1 over these five fine-tuning tasks.
AVG5_METRICS = ('ImNet', 'CIFAR-10', 'CIFAR-100', 'Pets', 'Flowers')


@dataclasses.dataclass(frozen=True)
class AccuracyRow:
  """One accuracy row of a paper table.

  Checkpoints live at `<checkpoint_dir>/<key>/<dataset>.npz`: the model
  fine-tuned on `<dataset>` (e.g. `i21k_B_16/cifar10.npz`). Rows whose
  `released` file exists under `<checkpoint_dir>` (the official bucket layout,
  e.g. `imagenet1k/Mixer-B_16.npz`) use it for ImageNet when the fine-tuned
  file is absent.
  """

  table: str
  key: str
  label: str
  model: str
  paper: dict[str, float]
  image_size: int = 224
  eval_mode: str = 'resize_small_crop'
  released: str | None = None


def _rows() -> list[AccuracyRow]:
  rows = [
      AccuracyRow('3', 'i1k_B_16', 'ImageNet (from scratch) B/16', 'Mixer-B_16',
                  {'ImNet': 76.44, 'ReaL': 82.36, 'Avg5': 88.33},
                  released='imagenet1k/Mixer-B_16.npz'),
      AccuracyRow('3', 'i1k_L_16', 'ImageNet (from scratch) L/16', 'Mixer-L_16',
                  {'ImNet': 71.76, 'ReaL': 77.08, 'Avg5': 87.25},
                  released='imagenet1k/Mixer-L_16.npz'),
      AccuracyRow('3', 'i21k_B_16', 'ImageNet-21k B/16', 'Mixer-B_16',
                  {'ImNet': 80.64, 'ReaL': 85.80, 'Avg5': 92.50}),
      AccuracyRow('3', 'i21k_L_16', 'ImageNet-21k L/16', 'Mixer-L_16',
                  {'ImNet': 82.89, 'ReaL': 87.54, 'Avg5': 93.63}),
      AccuracyRow('3', 'i21k_L_16_448', 'ImageNet-21k L/16 @448', 'Mixer-L_16',
                  {'ImNet': 83.91, 'ReaL': 87.75, 'Avg5': 93.86}, image_size=448),
  ]
  for name, top1 in PAPER_JFT_TOP1.items():
    short = name.replace('Mixer-', '')
    rows.append(AccuracyRow('3', f'jft_{short}', f'JFT-300M {short.replace("_", "/")}', name,
                            {'ImNet': top1}))
  # Table 2 (its Mixer rows, fine-tuned at 448 px) evaluates with resize to 256x256 (512 at
  # 448 px) -> central crop; its VTAB-1k column is the mean over the 19 tasks
  # (`python -m mixer_flax.transfer --suite=vtab1k`). JFT-300M H/14 has no public checkpoint.
  for key, label, model, paper in [
      ('i21k_L_16_448', 'ImageNet-21k L/16 @448', 'Mixer-L_16',
       {'ImNet': 84.15, 'ReaL': 87.86, 'Avg5': 93.91, 'VTAB': 74.95}),
      ('jft_H_14_448', 'JFT-300M H/14 @448', 'Mixer-H_14',
       {'ImNet': 87.94, 'ReaL': 90.18, 'Avg5': 95.71, 'VTAB': 75.33})]:
    rows.append(AccuracyRow('2', key, label, model, paper, image_size=448,
                            eval_mode='resize_crop'))
  for key, label, model, top1 in [('i1k_B_16', 'ImageNet B/16', 'Mixer-B_16', 96.72),
                                  ('i1k_L_16', 'ImageNet L/16', 'Mixer-L_16', 96.59),
                                  ('i21k_B_16', 'ImageNet-21k B/16', 'Mixer-B_16', 96.82),
                                  ('i21k_L_16', 'ImageNet-21k L/16', 'Mixer-L_16', 98.34)]:
    rows.append(AccuracyRow('cifar10', key, label, model, {'CIFAR-10': top1}))
  # Zhuang et al., "Surrogate Gap Minimization Improves Sharpness-Aware Training" (ICLR 2022),
  # Table 1, MLP-Mixer rows: ImageNet(-v1) / ReaL top-1 of Mixers trained from scratch on
  # ImageNet-1k (Inception crop + flip) with SAM (Chen et al., 2021) and GSAM; eval resize 256,
  # crop 224. Released: sam/Mixer-B_{16,32}.npz, gsam/Mixer-{S_32,S_16,S_8,B_32,B_16}.npz.
  for variant, sam_top1, gsam_top1 in [
      ('S_32', (66.7, 73.8), (68.6, 75.8)), ('S_16', (72.9, 79.8), (75.0, 81.7)),
      ('S_8', (75.9, 82.5), (76.8, 83.4)), ('B_32', (72.4, 79.0), (73.6, 80.2)),
      ('B_16', (77.4, 83.5), (77.8, 84.0))]:
    for method, (imnet, real) in (('sam', sam_top1), ('gsam', gsam_top1)):
      released = method == 'gsam' or variant.startswith('B')
      rows.append(AccuracyRow('sam', f'{method}_{variant}',
                              f'{method.upper()} {variant.replace("_", "/")}', f'Mixer-{variant}',
                              {'ImNet': imnet, 'ReaL': real},
                              released=f'{method}/Mixer-{variant}.npz' if released else None))
  return rows


ACCURACY_ROWS: list[AccuracyRow] = _rows()


def paper_number(metric: str, row_key: str | None) -> float | None:
  """The paper's `metric` ('VTAB', 'Avg5', ...) of the row `row_key` (None: no such number)."""
  for row in ACCURACY_ROWS:
    if row.key == row_key and metric in row.paper:
      return row.paper[metric]
  return None
