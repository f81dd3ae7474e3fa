"""A workdir you can trust: config checks on resume, the lock, damaged checkpoints, torn metrics.

Tiny digits runs in-process (8 simulated CPU devices, see conftest.py); one reference run
of STEPS steps (checkpoints at 40 and 60) is copied by the tests that resume it.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_train import STEPS, tiny_config

from mixer_flax import checkpoint, models, train
from mixer_flax.data import pipeline
from mixer_flax.eval import cli
from mixer_flax.training import checkpoints, resume, step, workdir, workdir_lock
from mixer_flax.training.metrics import MetricsLogger, read_metrics
from mixer_flax.validate import validate


def copy_of(reference, tmp_path):
  path = str(tmp_path / 'w')
  shutil.copytree(reference[1], path)
  return path


def snapshot(path):
  """Every file under `path` with its bytes and mtime."""
  out = {}
  for f in sorted(glob.glob(os.path.join(path, '**'), recursive=True)):
    if os.path.isfile(f):
      with open(f, 'rb') as fh:
        out[os.path.relpath(f, path)] = (fh.read(), os.stat(f).st_mtime_ns)
  return out


def no_compile(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('must stop before building or compiling anything')
  monkeypatch.setattr(step, 'create_train_state', fail)
  monkeypatch.setattr(step, 'make_train_step', fail)


# --- 1. A rerun with another config ---------------------------------------------------------

def test_changed_config_is_refused_before_anything_is_written(reference, data_dir, tmp_path,
                                                                monkeypatch):
  path = copy_of(reference, tmp_path)
  before = snapshot(path)
  no_compile(monkeypatch)
  config = tiny_config(data_dir, base_lr=0.05, batch=32, seed=7, total_steps=STEPS + 20)
  with pytest.raises(workdir.ConfigMismatch) as e:
    train.train_and_evaluate(config, path)
  message = str(e.value)
  for line in ('base_lr: 0.003 -> 0.05', 'batch: 64 -> 32', 'seed: 0 -> 7'):
    assert line in message
  assert 'total_steps' not in message  # may change on resume
  assert '--allow_config_change' in message and 'new --workdir' in message
  assert snapshot(path) == before  # config.json and everything else untouched, lock gone


def test_allowed_change_resumes_and_keeps_the_old_config(reference, data_dir, tmp_path, capsys):
  path = copy_of(reference, tmp_path)
  with open(os.path.join(path, 'config.json'), 'rb') as f:
    old = f.read()
  config = tiny_config(data_dir, base_lr=1e-3)
  config.evals.eval.every = 5
  with pytest.raises(workdir.ConfigMismatch, match='base_lr'):
    train.train_and_evaluate(config, path)
  result = train.train_and_evaluate(config, path, allow_config_change=True)
  assert result['resumed_from'] == STEPS and result['step'] == STEPS
  out = capsys.readouterr().out
  assert 'base_lr: 0.003 -> 0.001' in out and 'evals.eval.every: 30 -> 5' in out
  with open(os.path.join(path, f'config.step{STEPS}.json'), 'rb') as f:
    assert json.loads(f.read()) == json.loads(old)
  with open(os.path.join(path, 'config.json')) as f:
    assert json.load(f)['base_lr'] == 1e-3
  assert not os.path.exists(os.path.join(path, workdir_lock.LOCK_FILE))


def test_config_changes_splits_resumable_keys():
  saved = {'total_steps': 10, 'base_lr': 0.1, 'pp': {'flip': True, 'crop': 'resize'},
           'evals': {'eval': {'type': 'classification', 'every': 30}}}
  new = {'total_steps': 20, 'base_lr': 0.1, 'pp': {'flip': False},
         'evals': {'eval': {'type': 'classification', 'every': 5}, 'fs': {'every': 5}}}
  resumable, refused = workdir.config_changes(saved, new)
  assert resumable == ['evals.eval.every: 30 -> 5', 'evals.fs.every: (absent) -> 5',
                       'total_steps: 10 -> 20']
  assert refused == ['pp.crop: "resize" -> (absent)', 'pp.flip: true -> false']
  # A workdir of an earlier version: keys added since at their defaults are no change, the
  # replaced evaluator keys may change; a new key set to something else is refused.
  old = {'total_steps': 10, 'eval_every': 5, 'fewshot': {'every': 5}}
  resumable, refused = workdir.config_changes(old, {'total_steps': 10, 'sam': {'rho': None}})
  assert resumable == ['eval_every: 5 -> (absent)', 'fewshot.every: 5 -> (absent)']
  assert refused == []
  assert workdir.config_changes(old, {'total_steps': 10, 'sam': {'rho': 0.1}})[1] == [
      'sam.rho: (absent) -> 0.1']


# --- 2. Two runs in one workdir -------------------------------------------------------------

def dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def write_lock(path, **fields):
  holder = dict(host=socket.gethostname(), pid=os.getpid(), boot_id=workdir_lock._boot_id(),
                proc_start=None, started=time.time() - 3600, token='old', command='x')
  holder.update(fields)
  lock = os.path.join(path, workdir_lock.LOCK_FILE)
  with open(lock, 'w') as f:
    json.dump(holder, f)
  return lock


def test_second_run_is_refused_naming_the_holder(data_dir, tmp_path, monkeypatch):
  path = str(tmp_path / 'w')
  no_compile(monkeypatch)
  os.makedirs(path)
  with workdir_lock.WorkdirLock(path):
    with pytest.raises(workdir_lock.WorkdirLocked) as e:
      train.train_and_evaluate(tiny_config(data_dir), path)
    assert os.listdir(path) == [workdir_lock.LOCK_FILE]  # no config.json, nothing else
  assert f'pid {os.getpid()} on host {socket.gethostname()}, started 20' in str(e.value)
  assert os.listdir(path) == []


def test_stale_locks_are_taken_over(tmp_path):
  path = str(tmp_path)
  pid = dead_pid()
  write_lock(path, pid=pid)  # killed run on this machine
  with workdir_lock.WorkdirLock(path) as lock:
    assert f'process {pid} no longer runs' in lock.took_over
  write_lock(path, proc_start=workdir_lock._proc_start(os.getpid()) + 1)  # pid reused
  with workdir_lock.WorkdirLock(path) as lock:
    assert lock.took_over
  lock_file = write_lock(path, host='elsewhere', pid=1)  # another machine, fresh heartbeat
  with pytest.raises(workdir_lock.WorkdirLocked, match='host elsewhere'):
    workdir_lock.WorkdirLock(path).acquire()
  old = time.time() - workdir_lock.STALE_AFTER_S - 5
  os.utime(lock_file, (old, old))  # ... whose heartbeat stopped
  with workdir_lock.WorkdirLock(path) as lock:
    assert 'heartbeat stopped' in lock.took_over
  assert os.listdir(path) == []


def test_takeover_never_removes_a_fresh_lock(tmp_path):
  path = str(tmp_path)
  write_lock(path, pid=dead_pid())
  late = workdir_lock.WorkdirLock(path)
  holder, _ = late._read()  # judged stale ...
  os.remove(late.path)
  winner = workdir_lock.WorkdirLock(path).acquire()  # ... but another starter took over first
  with pytest.raises(workdir_lock.WorkdirLocked, match='at the same time'):
    late._remove_stale(holder)
  with open(late.path) as f:
    assert json.load(f)['token'] == winner.me['token']
  winner.release()
  assert os.listdir(path) == []


def test_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_S', 0.05)
  with workdir_lock.WorkdirLock(str(tmp_path)) as lock:
    old = time.time() - 1000
    os.utime(lock.path, (old, old))
    time.sleep(0.5)
    assert time.time() - os.stat(lock.path).st_mtime < 100


def test_workdir_that_is_a_file_is_refused(data_dir, tmp_path, monkeypatch):
  no_compile(monkeypatch)
  path = tmp_path / 'file'
  path.write_text('x')
  with pytest.raises(workdir.WorkdirError, match='is a file, not a directory'):
    train.train_and_evaluate(tiny_config(data_dir), str(path))
  assert path.read_text() == 'x'


# --- 4. A damaged newest checkpoint ---------------------------------------------------------

def damage(ckpt_dir, kind):
  data = sorted(glob.glob(os.path.join(ckpt_dir, 'default', 'ocdbt.process_0', 'd', '*')),
                key=os.path.getsize)
  if kind == 'deleted':
    for f in data[-2:]:
      os.remove(f)
  elif kind == 'truncated':
    with open(data[-1], 'r+b') as f:
      f.truncate(os.path.getsize(data[-1]) // 2)
  elif kind == 'empty_metadata':
    open(os.path.join(ckpt_dir, 'default', '_METADATA'), 'w').close()
  elif kind == 'flipped':  # decodes fine: caught by the sha256 recorded at save time
    with open(data[-1], 'r+b') as f:
      f.seek(1000)
      chunk = f.read(16)
      f.seek(1000)
      f.write(bytes(b ^ 0xFF for b in chunk))


@pytest.fixture(scope='module')
def template(data_dir):
  """The host train state the tiny config builds (restore target)."""
  config = tiny_config(data_dir)
  model = train.build_model(config, 10)
  return jax.device_get(train.initial_state(config, model, jax.random.key(1)))


def test_damaged_newest_checkpoint_falls_back_and_matches_uninterrupted(reference, data_dir,
                                                                         tmp_path, capsys):
  path = copy_of(reference, tmp_path)
  damage(os.path.join(path, 'checkpoints', str(STEPS)), 'deleted')
  result = train.train_and_evaluate(tiny_config(data_dir), path)
  assert result['resumed_from'] == 40 and result['step'] == STEPS
  assert result['params_digest'] == reference[0]['params_digest']
  out = capsys.readouterr().out
  assert f'checkpoint {STEPS} in' in out and 'cannot be restored' in out and 'not deleted' in out
  assert os.path.isdir(os.path.join(path, resume.DAMAGED_DIR, str(STEPS), 'default'))


@pytest.mark.parametrize('kind', ['truncated', 'empty_metadata', 'flipped'])
def test_each_kind_of_damage_is_detected(reference, template, tmp_path, kind):
  path = copy_of(reference, tmp_path)
  damage(os.path.join(path, 'checkpoints', str(STEPS)), kind)
  ckpts = checkpoints.Checkpoints(path, keep=2)
  warnings = []
  step_, state = resume.restore_latest(ckpts, template, log=warnings.append)
  assert step_ == 40 and int(state.step) == 40 and ckpts.all_steps() == [40]
  ckpts.close()
  assert len(warnings) == 1 and f'checkpoint {STEPS}' in warnings[0]


def test_no_restorable_checkpoint_stops_and_moves_nothing(reference, template, tmp_path):
  path = copy_of(reference, tmp_path)
  for s in (40, STEPS):
    damage(os.path.join(path, 'checkpoints', str(s)), 'empty_metadata')
  ckpts = checkpoints.Checkpoints(path, keep=2)
  with pytest.raises(workdir.WorkdirError, match='No checkpoint .* can be restored: step 60'):
    resume.restore_latest(ckpts, template, log=print)
  assert ckpts.all_steps() == [40, STEPS] and not os.path.exists(
      os.path.join(path, resume.DAMAGED_DIR))
  ckpts.close()


# --- 5. A torn last line of metrics.jsonl ---------------------------------------------------

def test_torn_last_metrics_line_is_dropped(reference, tmp_path):
  path = copy_of(reference, tmp_path)
  metrics = os.path.join(path, 'metrics.jsonl')
  with open(metrics) as f:
    text = f.read()
  with open(metrics, 'w') as f:
    f.write(text[:-30])  # the last record cut in the middle
  warnings = []
  records = read_metrics(path, warn=warnings.append)
  assert [r['step'] for r in records] == list(range(10, STEPS, 10))
  assert 'line 6' in warnings[0] and metrics in warnings[0]
  # A restart (the logger of a resumed run) no longer fails and rewrites the file without it.
  MetricsLogger(workdir=path, total_steps=STEPS, write_files=True, resume_step=STEPS).close()
  with open(metrics) as f:
    assert [json.loads(line)['step'] for line in f] == list(range(10, STEPS, 10))


def test_damage_before_the_last_metrics_line_names_file_and_line(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 1}\n{"step": 2\n{"step": 3}\n')
  with pytest.raises(ValueError, match=r'metrics\.jsonl, line 2: not a JSON record'):
    read_metrics(str(tmp_path))


# --- 6. Every split checked before compiling ------------------------------------------------

def image_folder(root, layout, broken=None):
  """root/<split>/<class>/<i>.png, 2 images per class; `broken`: (split, class) gets a bad file."""
  from PIL import Image
  rng = np.random.default_rng(0)
  for split, classes in layout.items():
    for name in classes:
      os.makedirs(os.path.join(root, split, name))
      for i in range(2):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, name, f'{i}.png'))
  if broken:
    bad = os.path.join(root, *broken, 'bad.png')
    with open(bad, 'wb') as f:
      f.write(b'\x89PNG not really')
    return bad
  return None


def folder_config(data_dir, root):
  return tiny_config(data_dir, dataset='image_folder', folder_root=root, batch_eval=8)


def test_broken_eval_image_is_found_before_compiling(data_dir, tmp_path, monkeypatch):
  root = str(tmp_path / 'images')
  bad = image_folder(root, {'train': 'ab', 'test': 'ab'}, broken=('test', 'b'))
  no_compile(monkeypatch)
  with pytest.raises(ValueError, match=f'cannot decode {bad}'):
    train.train_and_evaluate(folder_config(data_dir, root), str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')


def test_class_sets_of_the_splits_are_compared(data_dir, tmp_path, monkeypatch):
  no_compile(monkeypatch)
  root = str(tmp_path / 'eval_only')
  image_folder(root, {'train': 'ab', 'test': 'abz'})
  with pytest.raises(ValueError, match=r"eval_split='test'.*lacks: z\. The model cannot learn"):
    train.train_and_evaluate(folder_config(data_dir, root), str(tmp_path / 'w'))
  root = str(tmp_path / 'train_only')
  image_folder(root, {'train': 'abc', 'test': 'ab'})
  (warning,) = pipeline.check_splits(folder_config(data_dir, root))
  assert 'no images of the classes c' in warning


# --- Messages -------------------------------------------------------------------------------

def test_https_pretrained_path_passes_validation(data_dir):
  config = tiny_config(data_dir, pretrained_path='https://example.org/Mixer-Ti_4.npz')
  validate(config)  # fetched (and checked) by checkpoint.load_npz, not here
  with pytest.raises(FileNotFoundError, match='pretrained_path'):
    validate(tiny_config(data_dir, pretrained_path='/nonexistent/x.npz'))


def test_evaluate_names_the_head_not_a_config_key(data_dir, tmp_path, capsys):
  model = models.create_model('Mixer-Ti_4', num_classes=7)
  params = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))['params']
  npz = str(tmp_path / 'seven.npz')
  checkpoint.save_npz(npz, jax.device_get(params))
  with pytest.raises(SystemExit, match='^1$'):
    cli.evaluate_main(['--checkpoint', npz, '--dataset', 'sklearn_digits', '--data_dir',
                       data_dir, '--no_progress'])
  message = capsys.readouterr().err
  assert 'has a 7-class head but sklearn_digits has 10 classes' in message
  assert 'num_classes' not in message


# --- Through the command line: real signals, one-line refusals ------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = '''import json

import ml_collections


def get_config():
  return ml_collections.ConfigDict(json.loads({text!r}))
'''


def cli_command(data_dir, tmp_path, path, *extra):
  """`python -m mixer_flax.main` on the tiny config (written to a config file)."""
  config = tmp_path / 'tiny_config.py'
  config.write_text(CONFIG_FILE.format(text=tiny_config(data_dir).to_json()))
  return [sys.executable, '-m', 'mixer_flax.main', f'--config={config}', f'--workdir={path}',
          *extra]


@pytest.mark.slow
def test_cli_refusal_is_short_and_writes_nothing(reference, data_dir, tmp_path):
  path = copy_of(reference, tmp_path)
  before = snapshot(path)
  proc = subprocess.run(cli_command(data_dir, tmp_path, path, '--config.seed=7'), cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  err = proc.stderr
  assert err.startswith('error: --workdir=') and err.count('\n') == 1, err[-3000:]  # one line
  assert 'may not change on resume: seed: 0 -> 7; Nothing was written' in err
  assert snapshot(path) == before


@pytest.mark.slow
def test_ctrl_c_saves_then_resume_equals_uninterrupted(reference, data_dir, tmp_path):
  path = str(tmp_path / 'w')
  # Logging every step (a setting that may change on resume; the params do not depend on it)
  # keeps the run busy long enough to be interrupted.
  cmd = cli_command(data_dir, tmp_path, path, '--config.progress_every=1',
                    '--config.checkpoint_every=1000')
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    metrics = os.path.join(path, 'metrics.jsonl')
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not (
        os.path.exists(metrics) and os.path.getsize(metrics)):
      time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 130, err[-3000:]
  assert 'Ctrl-C: saving a checkpoint' in err and 'Traceback' not in err
  stopped = int(re.search(r'Interrupted \(Ctrl-C\) at step (\d+): checkpoint saved', out).group(1))
  assert 0 < stopped < STEPS
  assert os.listdir(os.path.join(path, 'checkpoints')) == [str(stopped)]
  result = train.train_and_evaluate(tiny_config(data_dir), path)
  assert result['resumed_from'] == stopped and result['step'] == STEPS
  assert result['params_digest'] == reference[0]['params_digest']


SLEEPER = '''
import time
from mixer_flax.training import preemption
with preemption.PreemptionSignal():
  print('ready', flush=True)
  while True:
    time.sleep(0.01)
'''


def test_second_ctrl_c_stops_at_once():
  proc = subprocess.Popen([sys.executable, '-c', SLEEPER], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    assert proc.stdout.readline() == 'ready\n'
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None  # the first Ctrl-C only asks the loop to save and stop
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == -signal.SIGINT
  finally:
    if proc.poll() is None:
      proc.kill()
  assert 'Press Ctrl-C again to stop at once' in proc.stderr.read()
