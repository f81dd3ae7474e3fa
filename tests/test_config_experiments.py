"""Every paper experiment config parses, validates and builds its model, optimizer, data spec.

No data and no real initialisation: shapes come from `jax.eval_shape`. digits.py and
permutation.py (not paper-recipe configs) are tested with the trainer.
"""

import math
import pathlib

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from mixer_flax import config as config_lib
from mixer_flax import models
from mixer_flax.training import optim
from mixer_flax.validate import validate

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / 'experiments'
PRETRAIN = {'imagenet_b16.py': ('Mixer-B_16', 'imagenet2012', 15, 0.5),
            'imagenet_l16.py': ('Mixer-L_16', 'imagenet2012', 15, 0.5),
            'imagenet21k_b16.py': ('Mixer-B_16', 'imagenet21k', 10, 0.2),
            'imagenet21k_l16.py': ('Mixer-L_16', 'imagenet21k', 20, 0.5)}
FINETUNE_DATASETS = ('imagenet2012', 'cifar10', 'cifar100', 'oxford_iiit_pet', 'oxford_flowers102',
                     'image_folder')
FINETUNE_ARGS = [f'{m},{d},{r}' for m in ('Mixer-B_16', 'Mixer-L_16') for d in FINETUNE_DATASETS
                 for r in (224, 448)] + ['Mixer-B_16,cifar10,i1k,test', 'Mixer-S_32,imagenet2012',
                                         None]
PRETRAIN_ARGS = [(f, None) for f in PRETRAIN] + [('imagenet_b16.py', 'test')]




def load(file: str, arg: str | None = None, *overrides: str):
  """Loads a config exactly as `mixer_flax.main` does: through absl config_flags."""
  spec = str(EXPERIMENTS / file) + (f':{arg}' if arg else '')
  argv = ['prog', f'--config={spec}', *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', flag_values=fv, sys_argv=argv)
  fv(argv)
  return fv.config


def build_and_check(config) -> None:
  """Validates `config` and builds model params, optimizer state and schedule abstractly."""
  base = config_lib.base_config()
  assert set(config) == set(base) and set(config.pp) == set(base.pp)
  validate(config, num_devices=8, process_count=1, check_files=False)
  validate(config, num_devices=1, process_count=1, check_files=False)
  # Data spec: a known dataset with splits; the class count is fixed except for image folders.
  assert config.dataset in FINETUNE_DATASETS or config.dataset == 'imagenet21k'
  assert config.train_split and config.eval_split and config.train_split != config.eval_split or (
      config.dataset == 'image_folder')
  assert (config.num_classes is None) == (config.dataset == 'image_folder')
  assert config.pp.eval_resize == config.image_size * 8 // 7
  # Model at the run's resolution; fine-tuning at K x the checkpoint resolution widens D_S.
  k = config.image_size // config.pretrained_image_size
  base = models.get_config(config.model_name)
  overrides = {key: v for key, v in config.model.items() if v is not None}
  if k > 1:
    overrides['tokens_mlp_dim'] = k * k * base.tokens_mlp_dim
  num_classes = config.num_classes or 7
  model = models.create_model(config.model_name, num_classes=num_classes, **overrides)
  images = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 3), np.float32)
  params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)['params'], images)
  tokens = (config.image_size // base.patch_size) ** 2
  assert params['head']['kernel'].shape == (base.hidden_dim, num_classes)
  assert params['MixerBlock_0']['token_mixing']['Dense_0']['kernel'].shape == (
      tokens, k * k * base.tokens_mlp_dim)
  tx = optim.make_optimizer(config)
  opt_state = jax.eval_shape(tx.init, params)
  assert len(jax.tree_util.tree_leaves(opt_state)) >= len(jax.tree_util.tree_leaves(params))
  lr = optim.make_schedule(config)
  assert float(lr(0)) == 0.0  # the reference warm-up starts at 0
  assert float(lr(config.warmup_steps)) == pytest.approx(config.base_lr, rel=1e-6)
  assert float(lr(config.total_steps)) == pytest.approx(config.end_lr, abs=1e-7)


@pytest.mark.parametrize('file,arg', PRETRAIN_ARGS)
def test_pretrain_configs(file, arg):
  config = load(file, arg)
  build_and_check(config)
  model_name, dataset, magnitude, alpha = PRETRAIN[file]
  assert (config.model_name, config.dataset) == (model_name, dataset)
  assert (config.pp.randaug_layers, config.pp.randaug_magnitude) == (2, magnitude)
  assert config.pp.mixup_alpha == alpha
  assert (config.optimizer, config.base_lr, config.weight_decay) == ('adam', 1e-3, 0.1)
  assert (config.batch, config.warmup_steps, config.decay_type) == (4096, 10_000, 'linear')
  assert (config.grad_norm_clip, config.model.stoch_depth, config.model.dropout) == (1.0, 0.1, 0)
  assert (config.pp.crop, config.pp.flip, config.image_size) == ('inception', True, 224)
  if dataset == 'imagenet2012':
    assert config.num_classes == 1000
    n = 1_281_167 if arg == 'test' else 1_268_355
    assert (config.train_split, config.eval_split) == (
        ('train', 'validation') if arg == 'test' else ('train[:99%]', 'train[99%:]'))
  else:
    assert config.num_classes == 21_843
    n = 14_197_122 - 51_200
  assert config.total_steps == math.ceil(300 * n / 4096)
  assert config.evals.fewshot.type == 'fewshot'
  assert 'imagenet2012' in config.evals.fewshot.datasets


@pytest.mark.parametrize('arg', FINETUNE_ARGS)
def test_finetune_configs(arg):
  folder = ('--config.folder_root=/data/folder',) if 'image_folder' in (arg or '') else ()
  config = load('finetune.py', arg, *folder)
  build_and_check(config)
  model_name, dataset, *rest = (arg or 'Mixer-B_16,cifar10').split(',')
  assert (config.model_name, config.dataset) == (model_name, dataset)
  size = int(rest[0]) if rest and rest[0].isdigit() else 224
  assert (config.image_size, config.pretrained_image_size) == (size, 224)
  assert config.pp.eval_resize == {224: 256, 448: 512}[size]
  assert (config.optimizer, config.momentum, config.weight_decay) == ('sgd', 0.9, 0.0)
  assert (config.batch, config.grad_norm_clip, config.decay_type) == (512, 1.0, 'cosine')
  assert config.base_lr == 0.03
  steps = {'imagenet2012': 20_000, 'cifar10': 10_000, 'cifar100': 10_000,
           'oxford_iiit_pet': 500, 'oxford_flowers102': 500, 'image_folder': 500}[dataset]
  assert config.total_steps == steps
  assert config.warmup_steps == (500 if steps >= 5_000 else 50)
  assert (config.pp.randaug_layers, config.pp.mixup_alpha, config.model.stoch_depth) == (0, 0, 0)
  source = 'imagenet1k' if rest and 'i1k' in rest else 'imagenet21k'
  assert config.pretrained_path == f'gs://mixer_models/{source}/{model_name}.npz'
  holdout = {'imagenet2012': '99%', 'cifar10': '98%', 'cifar100': '98%', 'oxford_iiit_pet': '90%',
             'oxford_flowers102': '90%'}
  if 'test' in rest:
    assert config.eval_split in ('test', 'validation')
  elif dataset in holdout:
    assert config.eval_split.startswith(f'train[{holdout[dataset]}:]')


def test_overrides_and_bad_arguments():
  config = load('finetune.py', 'Mixer-B_16,image_folder', '--config.folder_root=/data/pets',
                '--config.pretrained_path=/tmp/own.npz', '--config.base_lr=0.01',
                '--config.accum_steps=4')
  assert (config.folder_root, config.pretrained_path) == ('/data/pets', '/tmp/own.npz')
  with pytest.raises(ValueError, match=r'config\.folder_root must be set'):
    validate(load('finetune.py', 'Mixer-B_16,image_folder'), num_devices=1,
                        check_files=False)
  assert (config.base_lr, config.accum_steps) == (0.01, 4)
  validate(config, num_devices=8, process_count=1, check_files=False)
  # absl wraps the config's ValueError; the message names the bad argument.
  with pytest.raises(flags.IllegalFlagValueError, match="image_size='big' is not a number"):
    load('finetune.py', 'Mixer-B_16,cifar10,big')
  with pytest.raises(flags.IllegalFlagValueError, match='multiple of the pre-training resolution'):
    load('finetune.py', 'Mixer-B_16,cifar10,300')
  with pytest.raises(flags.IllegalFlagValueError, match='dataset .*svhn'):
    load('finetune.py', 'Mixer-B_16,svhn')
  with pytest.raises(flags.IllegalFlagValueError, match='no separate test split'):
    load('imagenet21k_b16.py', 'test')
