"""The 19 VTAB-1k tasks as data, and the fine-tuning config of one task.

Protocol (Zhai et al. 2019; split rules and label maps of google-research/task_adaptation):
every task trains on 1,000 examples: 800 'train' + 200 'val' taken from the dataset's
training data as each task defines; hyper-parameters are chosen on the 200 val examples,
then the model is fine-tuned again on all 1,000 and scored on the task's full test split.

Mixer paper settings: fine-tuning as for the other datasets (SGD momentum 0.9, batch 512,
global-norm clip 1, cosine decay after a linear warm-up, no weight decay, new zero head;
Section 3 "Fine-tuning") in the setup of ViT that Appendix C follows (2,500 steps for
VTAB-1k: Dosovitskiy et al. 2021, Appendix B.1.1), with the learning rate picked from
{0.003, 0.01, 0.03} (Appendix C, point 2). Resolution follows the
BiT-HyperRule (Section 3): 224 px for datasets with small images (area < 96x96), 448 px for the
others. Images are resized to that square (no crop, no flip: flips change the labels of the
location/orientation/azimuth/distance tasks, and Appendix A.2 found Inception crops did not
help fine-tuning); evaluation resizes the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import ml_collections

VTAB_STEPS = 2_500
VTAB_LRS = (0.003, 0.01, 0.03)
VTAB_WARMUP = 500  # The ViT/vit_jax fine-tuning default that Appendix C follows.
SMALL_IMAGE_AREA = 96 * 96  # BiT-HyperRule: smaller images are fine-tuned at the low size.
RESOLUTIONS = (224, 448)  # (small images, large images), Section 3.
GROUPS = ('natural', 'specialized', 'structured')
TRAIN, VAL = 800, 200  # VTAB-1k: 800 training and 200 validation examples per task
_LABELS = 'mixer_flax.transfer.labels:'


@dataclasses.dataclass(frozen=True)
class Splits:
  """tfds split strings of one task: `train` (800), `val` (200), `trainval` (1000), `test`."""

  train: str
  val: str
  trainval: str
  test: str


SplitRule = Callable[[Mapping[str, int]], Splits]


def holdout(percent: int, test: str = 'test') -> SplitRule:
  """val200 starts at the first `100 - percent`% held out of 'train' (Caltech, CIFAR, ...)."""

  def rule(counts: Mapping[str, int]) -> Splits:
    start = percent * counts['train'] // 100
    val = f'train[{start}:{start + VAL}]'
    return Splits(f'train[:{TRAIN}]', val, f'train[:{TRAIN}]+{val}', test)

  return rule


def separate(val: str = 'validation', test: str = 'test') -> SplitRule:
  """val200 = the first 200 of a separate validation split (DTD, Flowers, SUN397, ...)."""

  def rule(counts: Mapping[str, int]) -> Splits:
    del counts
    v = f'{val}[:{VAL}]'
    return Splits(f'train[:{TRAIN}]', v, f'train[:{TRAIN}]+{v}', test)

  return rule


def three_way(train_percent: int, val_percent: int) -> SplitRule:
  """'train' cut into train / val / test parts (EuroSAT, RESISC45, dSprites)."""

  def rule(counts: Mapping[str, int]) -> Splits:
    n = counts['train']
    start, test_start = train_percent * n // 100, (train_percent + val_percent) * n // 100
    v = f'train[{start}:{start + VAL}]'
    return Splits(f'train[:{TRAIN}]', v, f'train[:{TRAIN}]+{v}', f'train[{test_start}:]')

  return rule


def smallnorb(counts: Mapping[str, int]) -> Splits:
  """sNORB: val from the first half of 'test', test = its second half."""
  del counts
  v = f'test[:{VAL}]'
  return Splits(f'train[:{TRAIN}]', v, f'train[:{TRAIN}]+{v}', 'test[50%:]')


@dataclasses.dataclass(frozen=True)
class Task:
  """One VTAB-1k task.

  Attributes:
    name: task key ('clevr_count'); `label`: column name of the VTAB tables.
    group: 'natural' | 'specialized' | 'structured'.
    tfds_name: tfds name with the version pattern of task_adaptation.
    num_classes: classes after the label map.
    splits: fn(split sizes of the tfds dataset) -> `Splits`.
    image_px: typical side of the original images (BiT-HyperRule input).
    label_key: tfds label feature (identity label map).
    record_fn: 'module:function' label map (None: `label_key` as is).
  """

  name: str
  label: str
  group: str
  tfds_name: str
  num_classes: int
  splits: SplitRule
  image_px: int
  label_key: str = 'label'
  record_fn: str | None = None

  @property
  def dataset(self) -> str:
    """The tfds name without the version pattern."""
    return self.tfds_name.split(':')[0]

  @property
  def low_res(self) -> bool:
    """BiT-HyperRule: images smaller than 96x96 px."""
    return self.image_px * self.image_px < SMALL_IMAGE_AREA


def _t(name, label, group, tfds_name, num_classes, splits, image_px, **kw) -> Task:
  return Task(name, label, group, tfds_name, num_classes, splits, image_px, **kw)


TASKS: dict[str, Task] = {t.name: t for t in [
    _t('caltech101', 'Caltech101', 'natural', 'caltech101:3.*.*', 102, holdout(90), 300),
    _t('cifar100', 'CIFAR-100', 'natural', 'cifar100:3.*.*', 100, holdout(90), 32),
    _t('dtd', 'DTD', 'natural', 'dtd:3.*.*', 47, separate(), 300),
    _t('oxford_flowers102', 'Flowers102', 'natural', 'oxford_flowers102:2.*.*', 102,
       separate(), 500),
    # tfds ships only 4.x (same splits and labels; corrupt images fixed) of the 3.x VTAB used.
    _t('oxford_iiit_pet', 'Pets', 'natural', 'oxford_iiit_pet:4.*.*', 37, holdout(80), 300),
    _t('sun397', 'Sun397', 'natural', 'sun397/tfds:4.*.*', 397, separate(), 200),
    _t('svhn', 'SVHN', 'natural', 'svhn_cropped:3.*.*', 10, holdout(90), 32),
    _t('patch_camelyon', 'Camelyon', 'specialized', 'patch_camelyon:2.*.*', 2, separate(), 96),
    _t('eurosat', 'EuroSAT', 'specialized', 'eurosat/rgb:2.*.*', 10, three_way(60, 20), 64),
    _t('resisc45', 'Resisc45', 'specialized', 'resisc45:3.*.*', 45, three_way(60, 20), 256),
    _t('diabetic_retinopathy', 'Retinopathy', 'specialized',
       'diabetic_retinopathy_detection/btgraham-300:3.*.*', 5, separate(), 300),
    _t('clevr_count', 'Clevr-Count', 'structured', 'clevr:3.*.*', 8, holdout(90, 'validation'),
       320, record_fn=_LABELS + 'clevr_count'),
    _t('clevr_distance', 'Clevr-Dist', 'structured', 'clevr:3.*.*', 6,
       holdout(90, 'validation'), 320, record_fn=_LABELS + 'clevr_distance'),
    _t('dmlab', 'DMLab', 'structured', 'dmlab:2.0.1', 6, separate(), 360),
    _t('kitti_distance', 'KITTI-Dist', 'structured', 'kitti:3.*.*', 4, separate(), 375,
       record_fn=_LABELS + 'kitti_distance'),
    _t('dsprites_location', 'dSpr-Loc', 'structured', 'dsprites:2.*.*', 16, three_way(80, 10),
       64, record_fn=_LABELS + 'dsprites_location'),
    _t('dsprites_orientation', 'dSpr-Ori', 'structured', 'dsprites:2.*.*', 16,
       three_way(80, 10), 64, record_fn=_LABELS + 'dsprites_orientation'),
    _t('smallnorb_azimuth', 'sNORB-Azim', 'structured', 'smallnorb:2.*.*', 18, smallnorb, 96,
       label_key='label_azimuth'),
    _t('smallnorb_elevation', 'sNORB-Elev', 'structured', 'smallnorb:2.*.*', 9, smallnorb, 96,
       label_key='label_elevation'),
]}


def image_size_for(task: Task, resolutions: tuple[int, int] = RESOLUTIONS) -> int:
  """BiT-HyperRule: the small-image resolution for low-res datasets, else the large one."""
  return resolutions[0] if task.low_res else resolutions[1]


def task_config(task: Task, *, recipe: ml_collections.ConfigDict, counts: Mapping[str, int],
                stage: str, base_lr: float, image_size: int) -> ml_collections.ConfigDict:
  """The trainer config of one fine-tuning run of `task`.

  Args:
    task: the task.
    recipe: the fine-tuning config of experiments/finetune.py (optimizer, batch, schedule,
      pretrained checkpoint); dataset keys are replaced here.
    counts: split name -> examples of the prepared tfds dataset (for the split rules).
    stage: 'val' (train 800, score the 200 val examples) or 'test' (train on all 1,000,
      score the test split).
    base_lr: peak learning rate.
    image_size: fine-tuning resolution.

  Returns:
    A new config.
  """
  if stage not in ('val', 'test'):
    raise ValueError(f"stage={stage!r}: expected 'val' or 'test'.")
  splits = task.splits(counts)
  c = ml_collections.ConfigDict(recipe.to_dict())
  c.dataset = task.tfds_name
  c.num_classes = task.num_classes
  c.label_key = task.label_key
  c.record_fn = task.record_fn
  c.train_split, c.eval_split = ((splits.train, splits.val) if stage == 'val'
                                 else (splits.trainval, splits.test))
  c.image_size = image_size
  c.pp.update(crop='resize', flip=False, eval_mode='resize', eval_resize=image_size)
  c.shuffle_buffer = 1_000  # The whole 1k training set.
  c.base_lr = base_lr
  c.total_steps = VTAB_STEPS
  c.warmup_steps = VTAB_WARMUP
  c.evals = {'eval': dict(type='classification', every=c.total_steps)}  # scored at the end
  c.checkpoint_every = 500
  c.progress_every = 50
  return c
