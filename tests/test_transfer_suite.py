"""The suite runner end to end on tfds mock data with a tiny Mixer (hidden 16, one block).

Every one of the 19 VTAB tasks goes through the trainer (4 steps, one lr: no val sweep) and
writes its row; KITTI-Dist also runs the learning-rate sweep on the 200 val examples, and
sNORB-Azim / dSpr-Loc are killed and resumed (those two runs, uninterrupted, are the 19-task
run's). All runs use 16 px inputs, so tasks with the same class count run the same XLA
programs (compiled once per module: `fast_compile`).
tests/test_transfer_data.py checks every task's splits at the catalog sizes and its labels.
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
from mixer_flax.transfer import report, suite, tasks, vtab

pytestmark = pytest.mark.slow  # a quick tier without it: README "Tests"

ARCH = dict(patch_size=8, hidden_dim=16, num_blocks=1, tokens_mlp_dim=8, channels_mlp_dim=32)
SIZE = 16
OVERRIDES = dict(total_steps=4, warmup_steps=1, batch=8, batch_eval=40, checkpoint_every=2,
                 progress_every=2, shuffle_buffer=16, tf_threads=1, prefetch=1)
# Mock split sizes: each task's 800 train + 200 val slices fit without overlapping; test
# splits are small (evaluation cost). tests/test_transfer_data.py uses the catalog sizes.
SPLITS = {
    'caltech101:3.*.*': dict(train=2000, test=40),
    'cifar100:3.*.*': dict(train=2000, test=40),
    'dtd:3.*.*': dict(train=800, validation=200, test=40),
    'oxford_flowers102:2.*.*': dict(train=800, validation=200, test=40),
    'oxford_iiit_pet:4.*.*': dict(train=1000, test=40),
    'sun397/tfds:4.*.*': dict(train=800, validation=200, test=40),
    'svhn_cropped:3.*.*': dict(train=2000, test=40),
    'patch_camelyon:2.*.*': dict(train=800, validation=200, test=40),
    'eurosat/rgb:2.*.*': dict(train=1400),  # test = train[80%:]
    'resisc45:3.*.*': dict(train=1400),
    'diabetic_retinopathy_detection/btgraham-300:3.*.*': dict(
        train=800, validation=200, test=40),
    'clevr:3.*.*': dict(train=2000, validation=40),  # VTAB tests CLEVR on 'validation'
    'dmlab:2.0.1': dict(train=800, validation=200, test=40),
    'kitti:3.*.*': dict(train=800, validation=200, test=40),
    'dsprites:2.*.*': dict(train=2000),  # test = train[90%:]
    'smallnorb:2.*.*': dict(train=800, test=400),  # test = test[50%:]
}
TEST_COUNTS = dict(eurosat=280, resisc45=280, dsprites_location=200, dsprites_orientation=200,
                   smallnorb_azimuth=200, smallnorb_elevation=200)  # others: 40


@pytest.fixture(scope='module', autouse=True)
def fast_compile(tmp_path_factory):
  """Compile time dominates these runs. XLA programs are cached across the module (equal
  between tasks of one class count), built with JAX's switch for programs that run less than
  they compile (`jax_disable_most_optimizations`: ~35% less compile time here), and 'rbg'
  PRNG keys (their init programs compile ~2 s faster on CPU than threefry's; nothing here
  depends on the key implementation)."""
  settings = {'jax_compilation_cache_dir': str(tmp_path_factory.mktemp('xla_cache')),
              'jax_persistent_cache_min_compile_time_secs': 0,
              'jax_persistent_cache_min_entry_size_bytes': 0,
              'jax_disable_most_optimizations': True, 'jax_default_prng_impl': 'rbg'}
  old = {k: jax.config.values[k] for k in settings}
  cc.reset_cache()
  for key, value in settings.items():
    jax.config.update(key, value)
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


def run(env, names, directory, lrs, trainer=train.train_and_evaluate, overrides=OVERRIDES,
        extra=None):
  data_dir, recipe = env
  splits = {d: SPLITS[d] for d in tasks.datasets('vtab1k', names)}
  with transfer_mock.mock_datasets(data_dir, splits):
    suite_tasks = tasks.vtab_tasks(names, recipe=recipe, data_dir=data_dir,
                                   resolutions=(SIZE, SIZE))
    return suite.run_suite(suite_tasks, directory=str(directory), lrs=lrs, data_dir=data_dir,
                           overrides=overrides, extra=extra or dict(suite='vtab1k'),
                           trainer=trainer)


@pytest.fixture(scope='module')
def all_tasks(env, tmp_path_factory):
  """(suite directory, rows) of all 19 VTAB tasks, one lr (no val sweep), 4 steps each."""
  directory = tmp_path_factory.mktemp('vtab1k')
  rows = run(env, list(vtab.TASKS), directory, lrs=[0.01],
             extra=dict(suite='vtab1k', paper_row='i21k_L_16_448'))
  return directory, rows


def test_every_vtab_task_trains_and_writes_its_row(all_tasks):
  directory, rows = all_tasks
  assert [r['task'] for r in rows] == list(vtab.TASKS)
  for row in rows:
    task = vtab.TASKS[row['task']]
    test_count = TEST_COUNTS.get(task.name, 40)
    assert (row['num_classes'], row['train_count'], row['test_count'], row['steps']) == (
        task.num_classes, 1000, test_count, OVERRIDES['total_steps']), task.name
    assert 0 <= row['accuracy'] <= 1, task.name
    assert row['accuracy'] * test_count == pytest.approx(round(row['accuracy'] * test_count))
    # The trained model's head has the task's class count (an independent look at the run).
    final = checkpoint.flatten(checkpoint.load_npz(
        str(directory / task.name / 'test_lr0.01' / 'final.npz')))
    assert final['head/kernel'].shape == (ARCH['hidden_dim'], task.num_classes), task.name
  assert suite.read_results(str(directory)) == {r['task']: r for r in rows}
  # `reproduce_tables --table 2` reads the complete suite as the VTAB mean of its paper row.
  means = report.suite_results([str(directory / suite.RESULTS)])
  assert means[('i21k_L_16_448', 'VTAB')] == pytest.approx(
      100 * np.mean([r['accuracy'] for r in rows]))


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


def test_killed_suite_resumes_and_matches_uninterrupted(env, all_tasks, tmp_path, monkeypatch):
  names = ['smallnorb_azimuth', 'dsprites_location']
  reference = {r['task']: r for r in all_tasks[1]}  # the same runs, uninterrupted
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
  for got in final:
    want = reference[got['task']]
    assert got['params_digest'] == want['params_digest']
    np.testing.assert_equal(got['accuracy'], want['accuracy'])
