"""The suite runner end to end on tfds mock data with a tiny Mixer (hidden 16, one block).

Trainer runs are the expensive part (compiling a train and an eval step each), so the
full trainer runs for three representative tasks only: KITTI-Dist (label map over object
lists) with the learning-rate sweep, and sNORB-Azim / dSpr-Loc (grey images, a label
feature other than 'label', rescaled pixels) for resuming. tests/test_transfer_data.py runs
the data path of all 19 tasks.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transfer_mock
from jax.experimental.compilation_cache import compilation_cache as cc
from test_train import _sigterm_at  # SIGTERM while fetching a step's batch

from mixer_flax import checkpoint, models, train
from mixer_flax.data import pipeline
from mixer_flax.transfer import report, suite, tasks

ARCH = dict(patch_size=8, hidden_dim=16, num_blocks=1, tokens_mlp_dim=8, channels_mlp_dim=32)
SIZE = 16
OVERRIDES = dict(total_steps=4, warmup_steps=1, batch=8, batch_eval=40, checkpoint_every=2,
                 progress_every=2, shuffle_buffer=16, tf_threads=1, prefetch=1)
# Small test splits keep evaluation cheap; train/val sizes allow the 800 + 200 slices.
SPLITS = {'kitti:3.*.*': dict(train=800, validation=200, test=40),
          'smallnorb:2.*.*': dict(train=800, test=400),
          'dsprites:2.*.*': dict(train=8000)}


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(tmp_path_factory):
  """Reuses XLA programs across the runs of this module (most are identical between runs)."""
  keys = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs',
          'jax_persistent_cache_min_entry_size_bytes')
  old = {k: getattr(jax.config, k) for k in keys}
  cc.reset_cache()
  jax.config.update(keys[0], str(tmp_path_factory.mktemp('xla_cache')))
  jax.config.update(keys[1], 0)
  jax.config.update(keys[2], 0)
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  cc.reset_cache()


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  """(data_dir, recipe) with a random tiny pre-trained checkpoint at 16 px."""
  root = tmp_path_factory.mktemp('transfer')
  model = models.create_model('Mixer-Ti_16', num_classes=10, **ARCH)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)))['params']
  path = str(root / 'pretrained.npz')
  checkpoint.save_npz(path, params)
  recipe = tasks.finetune_config('Mixer-Ti_16,cifar10')
  recipe.model.update(ARCH)
  recipe.update(pretrained_path=path, pretrained_image_size=SIZE, data_dir=str(root / 'tfds'))
  return str(root / 'tfds'), recipe


def run(env, names, directory, lrs, trainer=train.train_and_evaluate):
  data_dir, recipe = env
  with transfer_mock.mock_datasets(data_dir, SPLITS):
    suite_tasks = tasks.vtab_tasks(names, recipe=recipe, data_dir=data_dir,
                                   resolutions=(SIZE, SIZE))
    return suite.run_suite(suite_tasks, directory=str(directory), lrs=lrs, data_dir=data_dir,
                           overrides=OVERRIDES, extra=dict(suite='vtab1k'), trainer=trainer)


def test_sweep_selects_on_val_then_scores_train_plus_val_on_test(env, tmp_path):
  rows = run(env, ['kitti_distance'], tmp_path, lrs=[0.003, 0.3])
  (row,) = rows
  val = {}
  for lr in ('0.003', '0.3'):
    with open(tmp_path / 'kitti_distance' / f'val_lr{lr}' / 'result.json') as f:
      result = json.load(f)
    assert result['eval_count'] == 200 and result['step'] == 4
    val[float(lr)] = result['eval_accuracy']
  assert row['val_accuracy'] == {k: val[float(k)] for k in ('0.003', '0.3')}
  assert row['lr'] == suite.select_lr(val)
  with open(tmp_path / 'kitti_distance' / f'test_lr{row["lr"]:g}' / 'result.json') as f:
    final = json.load(f)
  assert row['accuracy'] == final['eval_accuracy'] and row['test_count'] == 40
  assert row['train_split'] == 'train[:800]+validation[:200]' and row['test_split'] == 'test'
  assert suite.read_results(str(tmp_path)) == {'kitti_distance': row}
  table = report.markdown(rows, suite='vtab1k', groups=('structured',), expected=19)
  assert f'{100 * row["accuracy"]:.2f}' in table and '1 of 19 tasks: partial' in table


def test_killed_suite_resumes_and_matches_uninterrupted(env, tmp_path, monkeypatch):
  names = ['smallnorb_azimuth', 'dsprites_location']
  reference = run(env, names, tmp_path / 'reference', lrs=[0.01])
  directory = tmp_path / 'killed'

  # 1. SIGTERM in the middle of the first task: its checkpoint is saved, the suite stops.
  with monkeypatch.context() as m:
    m.setattr(pipeline, 'get_train_iterator', _sigterm_at(3))
    with pytest.raises(suite.Preempted, match='rerun'):
      run(env, names, directory, lrs=[0.01])
  assert suite.read_results(str(directory)) == {}

  # 2. Rerun: the first task resumes at step 3; killed between the tasks.
  calls = []

  def dies_on_second_task(config, workdir):
    calls.append(workdir)
    if 'dsprites' in workdir:
      raise KeyboardInterrupt('killed between tasks')
    return train.train_and_evaluate(config, workdir)

  with pytest.raises(KeyboardInterrupt):
    run(env, names, directory, lrs=[0.01], trainer=dies_on_second_task)
  with open(directory / 'smallnorb_azimuth' / 'test_lr0.01' / 'result.json') as f:
    assert json.load(f)['resumed_from'] == 3
  assert list(suite.read_results(str(directory))) == ['smallnorb_azimuth']

  # 3. Rerun: only the second task trains; every task appears once, equal to the reference.
  calls.clear()

  def counted(config, workdir):
    calls.append(workdir)
    return train.train_and_evaluate(config, workdir)

  final = run(env, names, directory, lrs=[0.01], trainer=counted)
  assert len(calls) == 1 and 'dsprites_location' in calls[0]
  with open(directory / suite.RESULTS) as f:
    lines = [json.loads(line) for line in f]
  assert [r['task'] for r in lines] == names
  for got, want in zip(final, reference):
    assert got['params_digest'] == want['params_digest']
    np.testing.assert_equal(got['accuracy'], want['accuracy'])
