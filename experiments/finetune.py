r"""Fine-tuning a pre-trained Mixer on a downstream dataset (paper appendix C).

Argument: `finetune.py:MODEL,DATASET[,RESOLUTION][,SOURCE][,test]`
  MODEL       a key of mixer_flax.models.MODEL_CONFIGS, e.g. Mixer-B_16, Mixer-L_16.
  DATASET     imagenet2012 | cifar10 | cifar100 | oxford_iiit_pet | oxford_flowers102 |
              image_folder (then also `--config.folder_root=ROOT`, ROOT/{train,test}/<class>/*).
  RESOLUTION  224 (default) or a multiple of it, e.g. 448: the model is fine-tuned at
              RESOLUTION from a 224-px checkpoint (`pretrained_image_size=224`); the token-mixing
              MLPs are adapted block-diagonally (paper appendix C) and eval resizes to 8/7 x
              RESOLUTION (512 for 448) before the central crop.
  SOURCE      i21k (default) or i1k: `pretrained_path` becomes the released checkpoint
              gs://mixer_models/imagenet21k/MODEL.npz or .../imagenet1k/MODEL.npz. Pass
              `--config.pretrained_path=FILE.npz` for a local copy or your own pre-training run.
  test        train on the whole training set and evaluate on the real test split (ImageNet:
              'validation'). Without it the run holds out part of train for choosing the lr:
              2% (CIFAR), 10% (Pets, Flowers), 1% (ImageNet), as in the paper.

Recipe (paper appendix C): SGD momentum 0.9, batch 512, global-norm clip 1, no weight decay, cosine
decay to 0 after a linear warm-up of 500 steps, a new zero-initialised head (the checkpoint's head
is replaced when the class count differs), train Inception crop + flip, eval resize shorter side
to 256 then central crop 224. Steps: ImageNet 20,000; CIFAR-10/100 10,000; Pets, Flowers 500 (and
image folders 500; pass `--config.total_steps`). For the 500-step runs the warm-up is 50 steps:
the reference default of 500 would make the whole run warm-up with no decay.
Learning rate: 0.03 by default; the paper picks it per dataset from the grid 0.003, 0.01, 0.03,
0.06 on the held-out split (`--config.base_lr=0.01`), then reruns with `test`.

Command:
  python -m mixer_flax.main --config=experiments/finetune.py:Mixer-B_16,cifar10 \
      --workdir=workdirs/ft_b16_cifar10
  python -m mixer_flax.main --config=experiments/finetune.py:Mixer-L_16,imagenet2012,448,test \
      --workdir=workdirs/ft_l16_i1k_448 --config.accum_steps=8

Expected results (test split, `test` argument; paper Tables 2-3): from the ImageNet-21k
checkpoints, ImageNet top-1 80.64 (B/16) and 82.89 (L/16) at 224, 83.91 (L/16 at 448); Avg-5
over ImageNet, CIFAR-10/100, Pets, Flowers 92.50 (B/16), 93.63 (L/16). CIFAR-10 at 224 with
the reference code (10k steps): i1k B/16 96.72, i1k L/16 96.59, i21k B/16 96.82, i21k L/16 98.34.
"""


import ml_collections

from mixer_flax import config as config_lib
from mixer_flax.paper import recipes

PRETRAINED_URLS = {
    'i21k': 'gs://mixer_models/imagenet21k/{model}.npz',
    'i1k': 'gs://mixer_models/imagenet1k/{model}.npz',
}
PRETRAINED_IMAGE_SIZE = 224
DEFAULT_ARG = 'Mixer-B_16,cifar10'


def parse_arg(arg: str | None) -> dict:
  """Parses 'MODEL,DATASET[,RESOLUTION][,SOURCE][,test]' (`config.parse_arg` grammar)."""
  out = config_lib.parse_arg(
      arg or DEFAULT_ARG, positional=('model', 'dataset', 'image_size'),
      words={'source': tuple(PRETRAINED_URLS), 'split': ('test',)}, model='', dataset='',
      image_size=PRETRAINED_IMAGE_SIZE, source='i21k', split='minival')
  if not out['dataset']:
    raise ValueError(f'finetune.py needs "MODEL,DATASET[,RESOLUTION][,i1k|i21k][,test]", got '
                     f'{arg!r}; e.g. finetune.py:Mixer-B_16,cifar10,448')
  out['test'] = out.pop('split') == 'test'
  if out['image_size'] % PRETRAINED_IMAGE_SIZE:
    raise ValueError(f'finetune.py resolution {out["image_size"]} must be a multiple of the '
                     f'pre-training resolution {PRETRAINED_IMAGE_SIZE} (e.g. 224 or 448).')
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The fine-tuning config for `arg` (see the module docstring)."""
  a = parse_arg(arg)
  if a['dataset'] not in recipes.FINETUNE_DATASETS:
    raise ValueError(f'finetune.py dataset {a["dataset"]!r} is not one of '
                     f'{", ".join(recipes.FINETUNE_DATASETS)}.')
  ds = recipes.FINETUNE_DATASETS[a['dataset']]
  c = config_lib.base_config()
  c.model_name = a['model']
  c.pretrained_path = PRETRAINED_URLS[a['source']].format(model=a['model'])
  c.pretrained_image_size = PRETRAINED_IMAGE_SIZE
  c.dataset = a['dataset']
  c.num_classes = ds['num_classes']
  c.train_split, c.eval_split = ds['test'] if a['test'] else ds['minival']
  c.image_size = a['image_size']
  c.pp.eval_resize = config_lib.eval_resize_for(a['image_size'])

  # The optimizer is base_config's: SGD momentum 0.9, batch 512, clip 1, lr 0.03, cosine to 0.
  c.total_steps = ds['total_steps']
  c.warmup_steps = min(500, c.total_steps // 10)
  c.shuffle_buffer = 50_000 if a['dataset'] == 'imagenet2012' else 10_000
  c.eval_every = max(c.total_steps // 10, 50)
  c.checkpoint_every = c.eval_every
  c.progress_every = max(c.total_steps // 100, 10)
  return c
