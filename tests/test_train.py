"""The training loop on the bundled digits: learning, outputs, resume, fine-tuning, failures.

All runs use a tiny Mixer (hidden 32, 2 blocks) on 16 px digits over the 8 simulated CPU
devices of conftest.py; one reference run is shared by several tests.
"""

import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from mixer_flax import checkpoint, train
from mixer_flax import config as config_lib
from mixer_flax.data import pipeline
from mixer_flax.eval import classification
from mixer_flax.training import checkpoints, resume
from mixer_flax.training import step as step_lib
from mixer_flax.training import workdir as workdir_lib
from mixer_flax.training.metrics import read_metrics
from mixer_flax.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60




def load_digits_config():
  return config_lib.load_experiment('experiments/digits.py')


def tiny_config(data_dir, **overrides):
  c = load_digits_config()
  c.data_dir = data_dir
  c.model.hidden_dim = 32
  c.model.num_blocks = 2
  c.model.tokens_mlp_dim = 32
  c.model.channels_mlp_dim = 64
  c.batch = 64
  c.batch_eval = 360  # the whole test split in one batch (45 per device)
  c.shuffle_buffer = 512
  c.total_steps = STEPS
  c.warmup_steps = 10
  c.base_lr = 3e-3
  c.progress_every = 10
  c.evals.eval.every = 30
  c.checkpoint_every = 20
  c.keep_checkpoints = 2
  c.tf_threads = 1
  for k, v in overrides.items():
    c[k] = v
  return c


def final_params(workdir):
  return checkpoint.load_npz(os.path.join(workdir, 'final.npz'))


def flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_digits_config_defines_every_trainer_key_and_validates():
  config = load_digits_config()
  assert set(config_lib.base_config().keys()) == set(config.keys())
  assert not config.pp.flip  # digits are not mirror-symmetric
  assert config_lib.load_experiment('experiments/digits.py:7').total_steps == 7
  validate(config)


def test_short_run_learns_and_writes_outputs(reference, data_dir):
  result, workdir = reference
  assert result['step'] == STEPS and not result['preempted']
  assert result['eval_count'] == 360  # the whole split, padding masked out
  assert result['eval_accuracy'] > 0.6  # chance: 0.1
  assert result['eval_top5_accuracy'] >= result['eval_accuracy']
  records = read_metrics(workdir)
  assert [r['step'] for r in records] == list(range(10, STEPS + 1, 10))
  for r in records:
    assert {'train_loss', 'learning_rate', 'img/s'} <= set(r)
    assert np.isfinite(r['train_loss']) and r['learning_rate'] > 0
  evals = [r for r in records if 'eval_accuracy' in r]
  assert [r['step'] for r in evals] == [30, 60]
  assert evals[-1]['eval_accuracy'] == pytest.approx(result['eval_accuracy'])
  assert records[-1]['train_loss'] < records[0]['train_loss']
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert saved['total_steps'] == STEPS and saved['model']['hidden_dim'] == 32
  assert saved['num_classes'] == 10  # resolved from the dataset
  ckpts = checkpoints.Checkpoints(workdir, keep=2)
  assert ckpts.all_steps() == [40, 60]
  # final.npz: official flat layout, identical to the last checkpoint's params.
  params = final_params(workdir)
  assert params['head']['kernel'].shape == (32, 10)
  assert params['MixerBlock_1']['token_mixing']['Dense_0']['kernel'].shape == (16, 32)
  model = train.build_model(tiny_config(data_dir), 10)
  template = jax.device_get(train.initial_state(tiny_config(data_dir), model,
                                                jax.random.key(1)))
  restored = ckpts.restore(60, template)
  ckpts.close()
  assert int(restored.step) == 60
  a, b = flat(params), flat(restored.params)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _sigterm_at(step_to_kill, signum=signal.SIGTERM):
  """Wraps get_train_iterator so that SIGTERM (or `signum`) arrives while fetching the batch
  of a step."""
  original = pipeline.get_train_iterator

  def wrapped(config, *, seed, start_step=0):
    for i, batch in enumerate(original(config, seed=seed, start_step=start_step)):
      if start_step + i + 1 == step_to_kill:
        os.kill(os.getpid(), signum)
      yield batch

  return wrapped


def test_sigterm_then_resume_equals_uninterrupted(reference, data_dir, tmp_path, monkeypatch):
  _, ref_dir = reference
  workdir = str(tmp_path)
  with monkeypatch.context() as m:
    m.setattr(pipeline, 'get_train_iterator', _sigterm_at(25))
    first = train.train_and_evaluate(tiny_config(data_dir), workdir)
  assert first['preempted'] and first['step'] == 25
  assert not os.path.exists(os.path.join(workdir, 'final.npz'))
  assert checkpoints.Checkpoints(workdir, keep=2).latest_step() == 25
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored

  second = train.train_and_evaluate(tiny_config(data_dir), workdir)
  assert second['resumed_from'] == 25 and second['step'] == STEPS
  steps = [r['step'] for r in read_metrics(workdir)]
  assert steps == [10, 20, 25, 30, 40, 50, 60]  # nothing repeated or skipped
  # Bit-identical to the uninterrupted run (same batches, same per-step RNG).
  a, b = flat(final_params(workdir)), flat(final_params(ref_dir))
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
  assert second['eval_accuracy'] == reference[0]['eval_accuracy']


def test_longer_rerun_continues_from_final_checkpoint(reference, data_dir, tmp_path):
  _, ref_dir = reference
  workdir = str(tmp_path / 'w')
  shutil.copytree(ref_dir, workdir)
  result = train.train_and_evaluate(tiny_config(data_dir, total_steps=STEPS + 10), workdir)
  assert result['resumed_from'] == STEPS and result['step'] == STEPS + 10
  assert [r['step'] for r in read_metrics(workdir)] == list(range(10, STEPS + 11, 10))
  assert checkpoints.Checkpoints(workdir, keep=2).all_steps() == [STEPS, STEPS + 10]


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(reference, data_dir,
                                                                     tmp_path):
  _, ref_dir = reference
  workdir = str(tmp_path / 'w')
  shutil.copytree(ref_dir, workdir)
  config = tiny_config(data_dir, total_steps=STEPS + 40, base_lr=1e30)
  with pytest.raises(train.NonFiniteLossError, match='non-finite.*last good checkpoint'):
    train.train_and_evaluate(config, workdir, allow_config_change=True)  # base_lr changed
  ckpts = checkpoints.Checkpoints(workdir, keep=2)
  assert ckpts.latest_step() == STEPS  # nothing saved after the blow-up
  model = train.build_model(config, 10)
  template = jax.device_get(train.initial_state(config, model, jax.random.key(1)))
  restored = ckpts.restore(STEPS, template)
  ckpts.close()
  assert checkpoints.all_finite(restored.params)
  a, b = flat(restored.params), flat(final_params(ref_dir))
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_fine_tuning_starts_from_a_zero_head_even_with_the_same_class_count(data_dir, tmp_path):
  """As the reference (vit_jax's load_pretrained resets the head): the checkpoint's body, the
  model's fresh zero head, also when the checkpoint has the same 10 classes."""
  config = tiny_config(data_dir)
  model = train.build_model(config, 10)
  params = jax.device_get(train.initial_state(config, model, jax.random.key(0)).params)
  params = jax.tree_util.tree_map(np.array, params)
  params['head'] = {'kernel': np.full((32, 10), 0.5, np.float32), 'bias': np.ones(10, np.float32)}
  params['stem']['bias'] = np.full_like(params['stem']['bias'], 0.25)
  config.pretrained_path = str(tmp_path / 'pretrained_10.npz')
  config.pretrained_image_size = 16
  checkpoint.save_npz(config.pretrained_path, params)
  init = jax.device_get(train.initial_state(config, model, jax.random.key(1)).params)
  np.testing.assert_array_equal(init['stem']['bias'], params['stem']['bias'])
  assert not np.any(init['head']['kernel']) and not np.any(init['head']['bias'])


def test_finetune_from_npz_with_other_class_count_replaces_head(reference, data_dir,
                                                                  tmp_path, monkeypatch):
  _, ref_dir = reference
  params = final_params(ref_dir)
  rng = np.random.default_rng(0)
  params['head'] = {'kernel': rng.normal(size=(32, 7)).astype(np.float32),
                    'bias': np.ones(7, np.float32)}
  npz = str(tmp_path / 'pretrained_7.npz')
  checkpoint.save_npz(npz, params)
  config = tiny_config(data_dir, pretrained_path=npz, pretrained_image_size=16,
                       total_steps=20, warmup_steps=2, optimizer='sgd', base_lr=0.03,
                       weight_decay=0.0, checkpoint_every=20)
  config.evals.eval.every = 20
  config.evals.fewshot = dict(
      type='fewshot', every=10, datasets=('sklearn_digits',), shots=(5,), seeds=(0,),
      image_size=16, batch=360, pp=dict(eval_mode='resize', eval_resize=16), data_dir=data_dir)
  loaded = []
  create = step_lib.create_train_state

  def spy(**kwargs):
    if kwargs.get('params') is not None:
      loaded.append(jax.device_get(kwargs['params']))
    return create(**kwargs)

  monkeypatch.setattr(step_lib, 'create_train_state', spy)
  result = train.train_and_evaluate(config, str(tmp_path / 'ft'))
  # Initialised from the checkpoint: body as saved, head replaced by a zero 10-class head.
  (init,) = loaded
  assert init['head']['kernel'].shape == (32, 10) and not np.any(init['head']['kernel'])
  body, saved = flat({k: v for k, v in init.items() if k != 'head'}), flat(
      {k: v for k, v in params.items() if k != 'head'})
  assert body.keys() == saved.keys()
  for k in body:
    np.testing.assert_array_equal(body[k], saved[k], err_msg=k)
  tuned = final_params(str(tmp_path / 'ft'))
  assert tuned['head']['kernel'].shape == (32, 10)
  assert np.abs(tuned['head']['kernel']).max() > 0  # the new head trained
  assert result['eval_accuracy'] > 0.6
  # The few-shot probe ran at steps 10 and 20 (its `every`) on the pre-logits.
  probes = [r for r in read_metrics(str(tmp_path / 'ft')) if 'fewshot/sklearn_digits_5shot' in r]
  assert [r['step'] for r in probes] == [10, 20]
  assert result['fewshot/sklearn_digits_5shot'] > 0.3  # 10 classes: chance 0.1


def test_checkpoint_from_another_optimizer_is_rejected_clearly(reference, data_dir, tmp_path):
  _, ref_dir = reference
  workdir = str(tmp_path / 'w')
  shutil.copytree(ref_dir, workdir)
  config = tiny_config(data_dir, total_steps=STEPS + 10, optimizer='sgd')
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    saved = f.read()
  with pytest.raises(workdir_lib.ConfigMismatch, match='optimizer: "adam" -> "sgd"'):
    train.train_and_evaluate(config, workdir)
  # Forced past the config check, the checkpoint is refused in one line, not 2,400.
  with pytest.raises(resume.CheckpointMismatch, match='optimizer.*lacks: opt_state') as e:
    train.train_and_evaluate(config, workdir, allow_config_change=True)
  assert len(str(e.value)) < 1000 and '\n' not in str(e.value)
  with open(os.path.join(workdir, 'config.json'), 'rb') as f:
    assert f.read() == saved  # the refused run did not replace the config


def _no_compile(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('validation must fail before building or compiling anything')
  monkeypatch.setattr(step_lib, 'create_train_state', fail)
  monkeypatch.setattr(step_lib, 'make_train_step', fail)


@pytest.mark.parametrize('overrides, error, pattern', [
    (dict(batch=60), ValueError, r'config\.batch=60'),
    (dict(batch=64, accum_steps=3), ValueError, r'config\.batch=64.*accum_steps'),
    (dict(batch_eval=100), ValueError, r'config\.batch_eval=100'),
    (dict(pretrained_path='/nonexistent/ckpt.npz'), FileNotFoundError,
     r'config\.pretrained_path'),
    (dict(dataset='no_such_dataset_xyz'), ValueError, r'config\.dataset'),
    (dict(model_name='Mixer-X_99'), ValueError, r'config\.model_name'),
    # Every evaluator's data is opened before compiling, not at its first run.
    (dict(evals=dict(eval=dict(type='classification', every=30),
                     fewshot=dict(type='fewshot', every=30, datasets=('cifar10',)))),
     FileNotFoundError, r"config\.evals\.fewshot reads cifar10\[train\]: Dataset 'cifar10' is "
                        'not prepared'),
])
def test_bad_config_fails_before_compiling(overrides, error, pattern, data_dir, tmp_path,
                                           monkeypatch):
  _no_compile(monkeypatch)
  workdir = str(tmp_path / 'w')
  with pytest.raises(error, match=pattern):
    train.train_and_evaluate(tiny_config(data_dir, **overrides), workdir)
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


def test_a_failing_final_evaluation_loses_no_training_and_a_rerun_finishes(data_dir, tmp_path,
                                                                           monkeypatch):
  """The final state is saved (checkpoint, final.npz, final.json) before the final
  evaluations; the rerun trains nothing and runs only the evaluations result.json lacks."""
  workdir = str(tmp_path / 'w')
  config = tiny_config(data_dir, total_steps=20, checkpoint_every=1000)  # only the final save
  config.evals.eval.every = 1000  # runs once, at the end

  def broken(self, params):
    raise OSError('the evaluation data went away')

  with monkeypatch.context() as m:
    m.setattr(classification.ClassificationEvaluator, 'run', broken)
    with pytest.raises(OSError, match='went away'):
      train.train_and_evaluate(config, workdir)
  assert checkpoints.Checkpoints(workdir, keep=2).all_steps() == [20]
  assert final_params(workdir)['head']['kernel'].shape == (32, 10)
  with open(os.path.join(workdir, 'final.json')) as f:
    assert json.load(f)['classes'] == [str(i) for i in range(10)]  # sklearn_digits' names
  assert not os.path.exists(os.path.join(workdir, 'result.json'))

  steps = [r['step'] for r in read_metrics(workdir)]
  rerun = train.train_and_evaluate(config, workdir)
  assert rerun['resumed_from'] == 20 and rerun['eval_count'] == 360  # trained nothing more
  assert [r['step'] for r in read_metrics(workdir)] == steps == [10, 20]
  with monkeypatch.context() as m:  # all done: a third run evaluates nothing
    m.setattr(classification.ClassificationEvaluator, 'run', broken)
    third = train.train_and_evaluate(config, workdir)
  assert third['eval_accuracy'] == rerun['eval_accuracy']
  with open(os.path.join(workdir, 'result.json')) as f:
    legs = json.load(f)['legs']
  assert [(leg['resumed_from'], leg['step']) for leg in legs] == [(20, 20), (20, 20)]
