"""Suite tables: group means, the paper's number, and `reproduce_tables --table 2` reading them."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import checkpoint, models
from mixer_flax import config as config_lib
from mixer_flax.paper import reproduce, tables
from mixer_flax.transfer import __main__ as cli
from mixer_flax.transfer import report, suite, tasks, vtab


def _rows(accuracy_of, paper_row='i21k_L_16_448'):
  return [dict(task=t.name, label=t.label, group=t.group, lr=0.01, accuracy=accuracy_of(t),
               train_split='train[:800]', test_split='test', suite='vtab1k', paper_row=paper_row)
          for t in vtab.TASKS.values()]


def test_group_means_and_overall_mean():
  acc = {'natural': 0.9, 'specialized': 0.8, 'structured': 0.5}
  rows = _rows(lambda t: acc[t.group])
  means = report.group_means(rows, vtab.GROUPS)
  assert means['natural'] == pytest.approx(90) and means['structured'] == pytest.approx(50)
  assert means['mean'] == pytest.approx(100 * (7 * 0.9 + 4 * 0.8 + 8 * 0.5) / 19)
  table = report.markdown(rows, suite='vtab1k', groups=vtab.GROUPS, expected=19,
                          paper_row='i21k_L_16_448',
                          paper=tables.paper_number('VTAB', 'i21k_L_16_448'))
  assert f'ours {means["mean"]:.2f}; paper (i21k_L_16_448): 74.95' in table
  assert '| **structured mean** | | | | 50.00 |' in table and 'partial' not in table


def test_table2_reads_suite_results(tmp_path):
  path = tmp_path / suite.RESULTS
  rows = _rows(lambda t: 0.75)
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  markdown = reproduce.main(['--table', '2', '--out', str(tmp_path / 'out'),
                             '--transfer_results', str(path)])
  assert '| ImageNet-21k L/16 @448 |' in markdown and '74.95 | 75.00' in markdown

  path.write_text(''.join(json.dumps(r) + '\n' for r in rows[:5]))
  markdown = reproduce.main(['--table', '2', '--out', str(tmp_path / 'out'),
                             '--transfer_results', str(path)])
  assert '5 of 19 vtab1k tasks finished' in markdown


def test_select_lr_prefers_best_then_smallest():
  assert suite.select_lr({0.003: 0.5, 0.01: 0.7, 0.03: 0.7}) == 0.01
  with pytest.raises(ValueError, match='No sweep results'):
    suite.select_lr({})


def test_results_rows_are_appended_whole(tmp_path):
  suite.append_result(str(tmp_path), {'task': 'dtd', 'accuracy': 0.5})
  suite.append_result(str(tmp_path), {'task': 'svhn', 'accuracy': 0.25})
  assert suite.read_results(str(tmp_path)) == {
      'dtd': {'task': 'dtd', 'accuracy': 0.5}, 'svhn': {'task': 'svhn', 'accuracy': 0.25}}
  assert not (tmp_path / f'{suite.RESULTS}.tmp').exists()


def test_avg5_runs_are_finetune_py_with_the_swept_lr(tmp_path):
  model = models.create_model('Mixer-Ti_16', num_classes=1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))
  path = str(tmp_path / 'ti16.npz')
  checkpoint.save_npz(path, jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                                   shapes['params']))
  (cifar,) = tasks.build('avg5', ['cifar10'], pretrained=path, data_dir=None)
  val, test = cifar.make_config('val', 0.06), cifar.make_config('test', 0.003)
  reference = config_lib.load_experiment('experiments/finetune.py:Mixer-Ti_16,cifar10,224,test')
  assert (val.train_split, val.eval_split, val.base_lr) == ('train[:98%]', 'train[98%:]', 0.06)
  assert (test.train_split, test.eval_split, test.base_lr) == ('train', 'test', 0.003)
  assert test.pretrained_path == path and test.model_name == 'Mixer-Ti_16'
  for key in ('total_steps', 'batch', 'optimizer', 'momentum', 'warmup_steps', 'grad_norm_clip'):
    assert test[key] == reference[key], key


def test_unknown_override_key_is_named():
  config = config_lib.base_config()
  with pytest.raises(KeyError, match="no key 'pp.crops'"):
    suite.run_task(suite.SuiteTask('t', 't', 'g', 'd', lambda stage, lr: config),
                   directory='/nonexistent', lrs=[0.1], overrides={'pp.crops': 'resize'})
  assert cli.parse_overrides(['batch=256', 'pp.eval_mode=resize_crop']) == {
      'batch': 256, 'pp.eval_mode': 'resize_crop'}
