r"""The paper's training recipes as configs, and the dataset sizes they need.

`pretrain_config` is a Table 4 pre-training run (used by `experiments/imagenet*_?16.py`);
`FINETUNE_DATASETS` holds the fine-tuning tasks of `experiments/finetune.py`.

Dataset facts used to turn epochs into steps and to hold out validation data:
  imagenet2012   tfds, 1,281,167 train images; `train[:99%]` = 1,268,355 (tfds
                 rounds the 99% boundary); minival `train[99%:]` = 12,812.
  imagenet21k    NOT in the tfds catalog: we assume a tfds dataset built by the
                 user under the name 'imagenet21k' (as big_vision names it),
                 one split 'full' with the 14,197,122 images of the fall 2011
                 release and 21,843 classes (the class count of the released
                 ImageNet-21k checkpoints). The first 51,200
                 images are held out as minival. Adjust `IMAGENET21K_*` or pass
                 `--config.total_steps` if your copy differs.
"""

from __future__ import annotations

import math

import ml_collections

from mixer_flax import config as config_lib
from mixer_flax.eval import fewshot

IMAGENET_TRAIN_EXAMPLES = 1_281_167
IMAGENET_MINIVAL_TRAIN_EXAMPLES = 1_268_355  # train[:99%]
IMAGENET21K_EXAMPLES = 14_197_122
IMAGENET21K_HOLDOUT = 51_200
IMAGENET21K_CLASSES = 21_843

# Pre-training (paper Table 4 and appendix B): per (model, data) the augmentation.
PRETRAIN_BATCH = 4096
PRETRAIN_EPOCHS = 300

# Fine-tuning datasets (paper appendix C): tfds name -> classes, steps, and the
# (train, eval) splits for model selection (held-out minival) and for the final
# run on the real test split.
FINETUNE_DATASETS = {
    'imagenet2012': dict(num_classes=1000, total_steps=20_000,
                         minival=('train[:99%]', 'train[99%:]'), test=('train', 'validation')),
    'cifar10': dict(num_classes=10, total_steps=10_000,
                    minival=('train[:98%]', 'train[98%:]'), test=('train', 'test')),
    'cifar100': dict(num_classes=100, total_steps=10_000,
                     minival=('train[:98%]', 'train[98%:]'), test=('train', 'test')),
    'oxford_iiit_pet': dict(num_classes=37, total_steps=500,
                            minival=('train[:90%]', 'train[90%:]'), test=('train', 'test')),
    # Flowers-102: train + validation (2 x 1,020 images) form the training set.
    'oxford_flowers102': dict(num_classes=102, total_steps=500,
                              minival=('train[:90%]+validation[:90%]',
                                       'train[90%:]+validation[90%:]'),
                              test=('train+validation', 'test')),
    # root/{train,test}/<class>/*; classes counted from the folder.
    'image_folder': dict(num_classes=None, total_steps=500,
                         minival=('train', 'test'), test=('train', 'test')),
}


def steps_for_epochs(epochs: float, *, num_examples: int, batch: int) -> int:
  """Number of steps of `batch` examples that cover `epochs` passes (rounded up)."""
  return math.ceil(epochs * num_examples / batch)


def pretrain_config(*, model_name: str, dataset: str, randaug_magnitude: int,
                    mixup_alpha: float, arg: str | None = None) -> ml_collections.ConfigDict:
  """A pre-training run of the paper (Table 4 and appendix B).

  Adam (0.9, 0.999), lr 1e-3, weight_decay 0.1 (multiplied by the lr, AdamW
  style: 1e-4 per step at peak, see mixer_flax/training/optim.py), batch 4096, 10k
  warm-up steps then linear decay to 1e-5, 300 epochs, global-norm clip 1,
  224 px Inception crop + flip, RandAugment 2 layers, stochastic depth 0.1,
  no dropout, softmax cross-entropy; linear 1/5/10/25-shot ImageNet probes on the
  pre-logits every 10k steps (paper section 3).

  Batch 4096 does not fit one accelerator: add `--config.accum_steps=N` (the global batch
  and the result stay the same; batch must divide by processes x devices x N), and
  optionally `--config.model.dtype=bfloat16 --config.optim_dtype=bfloat16` for speed and
  memory (the paper's numbers are float32).

  Args:
    model_name: 'Mixer-B_16' or 'Mixer-L_16'.
    dataset: 'imagenet2012' or 'imagenet21k'.
    randaug_magnitude: RandAugment magnitude (2 layers).
    mixup_alpha: mixup Beta parameter.
    arg: the config-file argument: None/'' (hold out minival, the paper's
      model-selection setup) or 'test' (train on all training data, evaluate
      on ImageNet 'validation'; imagenet2012 only).

  Returns:
    The config.
  """
  test = config_lib.parse_arg(arg, words={'split': ('test',)}, split='minival')['split'] == 'test'
  c = config_lib.base_config()
  c.model_name = model_name
  c.model.stoch_depth = 0.1
  c.dataset = dataset
  if dataset == 'imagenet2012':
    c.num_classes = 1000
    if test:
      c.train_split, c.eval_split = 'train', 'validation'
      num_train = IMAGENET_TRAIN_EXAMPLES
    else:
      num_train = IMAGENET_MINIVAL_TRAIN_EXAMPLES
  elif dataset == 'imagenet21k':
    if test:
      raise ValueError("imagenet21k has no separate test split: use no config argument.")
    c.num_classes = IMAGENET21K_CLASSES
    c.train_split = f'full[{IMAGENET21K_HOLDOUT}:]'
    c.eval_split = f'full[:{IMAGENET21K_HOLDOUT}]'
    num_train = IMAGENET21K_EXAMPLES - IMAGENET21K_HOLDOUT
  else:
    raise ValueError(f'Unknown pre-training dataset {dataset!r}.')
  c.pp.randaug_layers = 2
  c.pp.randaug_magnitude = randaug_magnitude
  c.pp.mixup_alpha = mixup_alpha
  c.shuffle_buffer = 250_000

  c.batch = PRETRAIN_BATCH
  c.batch_eval = 1024
  c.total_steps = steps_for_epochs(PRETRAIN_EPOCHS, num_examples=num_train, batch=c.batch)
  c.optimizer = 'adam'
  c.base_lr = 1e-3
  c.end_lr = 1e-5
  c.warmup_steps = 10_000
  c.decay_type = 'linear'
  c.weight_decay = 0.1

  c.eval_every = 5_000
  c.checkpoint_every = 2_000
  c.progress_every = 200
  # Linear 5-shot ImageNet (the paper's few-shot number) and 1/10/25 shots, 3 seeds.
  c.fewshot = fewshot.get_fewshot_config(datasets=('imagenet2012',), every=10_000)
  return c
