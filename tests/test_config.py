"""config.py (plain data, the argument grammar) and validate.py (every problem at once)."""

import ml_collections
import pytest

from mixer_flax import config as config_lib
from mixer_flax.validate import validate


def make_config(**overrides) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.update(dict(model_name='Mixer-Ti_4', image_size=16, batch=16, batch_eval=16, total_steps=20,
                optimizer='adam', label_smoothing=0.1, dataset='sklearn_digits'), **overrides)
  return c


def test_validate_config_accepts_good_and_names_bad_keys():
  validate(make_config(), num_devices=8, process_count=1)
  with pytest.raises(ValueError, match=r'config\.batch=16 is not divisible .* 32'):
    validate(make_config(accum_steps=4), num_devices=8, process_count=1)
  with pytest.raises(ValueError, match=r'config\.batch=16 is not divisible'):
    validate(make_config(), num_devices=8, process_count=4)
  bad = make_config(optimizer='lamb', batch_eval=12, label_smoothing=0.1, loss='sigmoid_xent',
                    warmup_steps=-1, image_size=18, decay_type='step')
  with pytest.raises(ValueError) as err:
    validate(bad, num_devices=8, process_count=1)
  for key in ('optimizer', 'batch_eval', 'label_smoothing', 'warmup_steps', 'image_size',
              'decay_type'):
    assert f'config.{key}' in str(err.value)
  bad = make_config(dataset='image_folder', folder_root=None, pretrained_path='ft.npz',
                    pretrained_image_size=0)
  with pytest.raises(ValueError) as err:
    validate(bad, num_devices=1, process_count=1)
  for key in ('folder_root', 'pretrained_image_size=0'):
    assert f'config.{key}' in str(err.value)
  bad = make_config()
  bad.model = ml_collections.ConfigDict(dict(stoch_depth=0.1, widht=3))
  with pytest.raises(ValueError, match=r'config\.model has unknown key'):
    validate(bad, num_devices=1, process_count=1)
  bad.model = ml_collections.ConfigDict(dict(token_layout='snc'))  # a removed key
  with pytest.raises(ValueError, match=r"config\.model has unknown key\(s\) \['token_layout'\]"):
    validate(bad, num_devices=1, process_count=1)
  validate(make_config(model=ml_collections.ConfigDict(dict(remat=True))), num_devices=1,
           process_count=1)
  del bad['total_steps']
  with pytest.raises(ValueError, match=r'config\.total_steps is missing'):
    validate(bad, num_devices=1, process_count=1)


def test_validate_reports_data_loop_and_evaluator_problems_together():
  bad = config_lib.base_config()
  bad.pp.update(crop='center', area_min=0.0, eval_resize=100, mixup_alpha=-1.0)
  bad.evals = ml_collections.ConfigDict(dict(val=dict(type='top1', every=0)))
  bad.progress_every = 0
  with pytest.raises(ValueError) as err:
    validate(bad, num_devices=1, process_count=1)
  message = str(err.value)
  for key in ('config.pp.crop', 'config.pp.area_min', 'config.pp.eval_resize=100',
              'config.pp.mixup_alpha', 'config.progress_every'):
    assert key in message
  bad.progress_every = 10
  with pytest.raises(ValueError) as err:
    validate(bad, num_devices=1, process_count=1)
  assert "config.evals.val.type='top1'" in str(err.value)
  assert 'config.evals.val.every=0' in str(err.value)


def test_validate_names_bad_augmentation_choices_and_odd_mixup_pairs():
  good = make_config(batch=48)
  good.pp.update(mixup_alpha=0.5, randaug_layers=2, randaug_magnitude=15)
  validate(good, num_devices=8, process_count=1)  # 6 per device
  bad = make_config(batch=24)  # 3 per device on 8 devices
  bad.pp.update(mixup_alpha=0.2)
  with pytest.raises(ValueError) as err:
    validate(bad, num_devices=8, process_count=1)
  message = str(err.value)
  assert ('config.batch=24 over 8 devices (processes x local devices) is 3 per device; make '
          'config.batch a multiple of 16 or set config.pp.mixup_alpha=0') in message
  with pytest.raises(ValueError, match=r'over 8 devices .* is 3 per device'):
    validate(bad, num_devices=4, process_count=2)  # 2 processes x 4: 3 each
  bad.pp.mixup_alpha = 0.0
  validate(bad, num_devices=8, process_count=1)  # no mixup: any per-device batch


def test_missing_pretrained_file_is_named(tmp_path):
  config = config_lib.base_config()
  config.pretrained_path = str(tmp_path / 'nope.npz')
  with pytest.raises(FileNotFoundError, match=r'config\.pretrained_path=.*nope\.npz'):
    validate(config, num_devices=1, process_count=1)
  validate(config, num_devices=1, process_count=1, check_files=False)


def test_evaluators_have_one_syntax_and_old_keys_name_their_replacement():
  config = make_config()
  config.evals.probe = dict(type='fewshot', every=5, datasets=('sklearn_digits',), shots=(1,))
  validate(config, num_devices=1, process_count=1)
  config.evals.probe.shot = 3
  config.eval_every = 7
  config.fewshot = ml_collections.ConfigDict(dict(every=5))
  config.totl_steps = 3
  config.pp.randaug_mode = 'switch'
  with pytest.raises(ValueError) as err:
    validate(config, num_devices=1, process_count=1)
  message = str(err.value)
  assert 'config.eval_every was replaced by config.evals.<name>.every' in message
  assert 'config.fewshot was replaced by an evaluator entry: config.evals.fewshot =' in message
  assert 'config.totl_steps is not a trainer key; did you mean config.total_steps?' in message
  assert 'config.pp.randaug_mode was replaced by nothing: the backend picks' in message
  assert "config.evals.probe has unknown option(s) ['shot'] for type 'fewshot'" in message


def test_parse_arg_is_one_grammar_for_every_experiment_file():
  parse = config_lib.parse_arg
  assert parse(None, positional=('total_steps',), total_steps=500) == {'total_steps': 500}
  assert parse('300', positional=('total_steps',), total_steps=500) == {'total_steps': 300}
  assert parse('total_steps=7', positional=('total_steps',), total_steps=500)['total_steps'] == 7
  assert parse('patch_pixel:300', positional=('variant', 'total_steps'), variant='original',
               total_steps=0) == {'variant': 'patch_pixel', 'total_steps': 300}
  finetune = dict(positional=('model', 'dataset', 'image_size'),
                  words={'source': ('i21k', 'i1k'), 'split': ('test',)}, model='', dataset='',
                  image_size=224, source='i21k', split='minival')
  assert parse('Mixer-L_16,imagenet2012,448,i1k,test', **finetune) == dict(
      model='Mixer-L_16', dataset='imagenet2012', image_size=448, source='i1k', split='test')
  assert parse('test', words={'split': ('test',)}, split='minival') == {'split': 'test'}
  with pytest.raises(ValueError, match="item 'bogus' is not understood"):
    parse('bogus', words={'split': ('test',)}, split='minival')
  with pytest.raises(ValueError, match="total_steps='many' is not a number"):
    parse('many', positional=('total_steps',), total_steps=500)
  with pytest.raises(ValueError, match="unknown key 'steps'"):
    parse('steps=3', positional=('total_steps',), total_steps=500)


def test_load_experiment_reads_the_file_argument():
  assert config_lib.load_experiment('experiments/digits.py:7').total_steps == 7
  assert config_lib.load_experiment('experiments/digits.py').total_steps == 500
  config = config_lib.load_experiment('experiments/finetune.py:Mixer-B_16,cifar10,448,test')
  assert (config.image_size, config.eval_split, config.pp.eval_resize) == (448, 'test', 512)
  with pytest.raises(FileNotFoundError, match='experiments/nope.py'):
    config_lib.load_experiment('experiments/nope.py:1')
