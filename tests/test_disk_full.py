"""A full disk or a closed terminal costs one line and nothing else.

The trainer and each writer run against a full file system (`full_disk.py`): a real tmpfs
when this process may mount one, and always with ENOSPC injected at the lowest write calls,
so CI without mount rights covers every path. Each failure must be one line naming the file,
leave no partial file or `*.orbax-checkpoint-tmp` directory, keep the newest good checkpoint,
and a rerun with space must reach the parameters of an uninterrupted run (`params_digest`).
The trainer runs use the tiny Mixer of tests/test_train.py.
"""

import errno
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import pytest
from full_disk import InjectedDisk, can_mount, make_disk
from jax.experimental.compilation_cache import compilation_cache as cc
from test_train import _sigterm_at, tiny_config

from mixer_flax import fileio, train
from mixer_flax.data import pipeline
from mixer_flax.training import checkpoints
from mixer_flax.training.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 30
LEAVE = 64 << 10  # room for metrics lines, not for a checkpoint (~170 KiB)
# The quick tier injects ENOSPC; the real tmpfs runs with the slow tests (README "Tests").
DISKS = [pytest.param('tmpfs', marks=pytest.mark.slow), 'injected']
XLA = {'jax_compilation_cache_dir': None, 'jax_persistent_cache_min_compile_time_secs': 0,
       'jax_persistent_cache_min_entry_size_bytes': 0, 'jax_disable_most_optimizations': True,
       'jax_default_prng_impl': 'rbg'}


@pytest.fixture(scope='module', autouse=True)
def fast_compile(tmp_path_factory):
  """The runs compile the same programs: cached across the module (also for subprocesses)."""
  settings = dict(XLA, jax_compilation_cache_dir=str(tmp_path_factory.mktemp('xla_cache')))
  old = {k: jax.config.values[k] for k in settings}
  cc.reset_cache()
  for key, value in settings.items():
    jax.config.update(key, value)
  yield settings
  for k, v in old.items():
    jax.config.update(k, v)
  cc.reset_cache()


def config(data_dir, **overrides):
  c = tiny_config(data_dir, total_steps=STEPS, checkpoint_every=10, **overrides)
  c.evals = {}
  return c


@pytest.fixture(scope='module')
def reference(data_dir, tmp_path_factory):
  """params_digest of an uninterrupted run, and its workdir."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  return train.train_and_evaluate(config(data_dir), workdir)['params_digest'], workdir


@pytest.fixture(params=DISKS)
def disk(request, tmp_path, monkeypatch):
  d = make_disk(request.param, str(tmp_path), monkeypatch)
  yield d
  d.close()


@pytest.fixture
def one_disk(tmp_path, monkeypatch):
  """The real tmpfs where it can be mounted, else the injected one."""
  d = make_disk('tmpfs' if can_mount() else 'injected', str(tmp_path), monkeypatch)
  yield d
  d.close()


def fill_at(monkeypatch, disk, step, *, leave, after_checkpoint=None):
  """Fills `disk` when the loop fetches the batch of `step`; returns the steps fetched."""
  original, fetched = pipeline.get_train_iterator, []

  def wrapped(config, *, seed, start_step=0):
    for i, batch in enumerate(original(config, seed=seed, start_step=start_step)):
      fetched.append(start_step + i + 1)
      if fetched[-1] == step:
        if after_checkpoint:  # its asynchronous save has committed
          ckpt = os.path.join(disk.path, 'w', 'checkpoints', str(after_checkpoint))
          for _ in range(300):
            if os.path.exists(ckpt) and len(os.listdir(os.path.dirname(ckpt))) == 1:
              break
            time.sleep(0.1)
        disk.fill(leave=leave)
      yield batch

  monkeypatch.setattr(pipeline, 'get_train_iterator', wrapped)
  return fetched


def assert_one_line(error, capfd, *patterns):
  text = str(error)
  assert '\n' not in text and len(text) < 600, text
  for p in patterns:
    assert p in text, text
  out, err = capfd.readouterr()
  for noise in ('Traceback', 'Event loop is closed', 'RESOURCE_EXHAUSTED'):
    assert noise not in out + err, (out + err)[-3000:]


def partial_files(root):
  return sorted(os.path.join(d, n) for d, dirs, files in os.walk(root) for n in dirs + files
                if 'tmp' in n and n != 'filler')


def test_checkpoint_refused_in_background_stops_run_keeps_newest_and_resumes(
    disk, data_dir, reference, monkeypatch, capfd):
  workdir = os.path.join(disk.path, 'w')
  fetched = fill_at(monkeypatch, disk, 15, leave=LEAVE, after_checkpoint=10)
  with pytest.raises(fileio.WriteError) as e:
    train.train_and_evaluate(config(data_dir), workdir)
  assert_one_line(e.value, capfd, 'checkpoint of step 20', 'no space left',
                  'The checkpoint of step 10 is intact', '--config.keep_checkpoints', 'free')
  assert e.value.errno == errno.ENOSPC
  assert 20 < max(fetched) <= 25  # stopped at the next steps, not at the next save (30)
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['10']
  assert not partial_files(workdir) and not os.path.exists(os.path.join(workdir, 'lock.json'))

  disk.free()
  monkeypatch.undo()  # the real input pipeline again (and no injected failures)
  result = train.train_and_evaluate(config(data_dir), workdir)
  assert result['resumed_from'] == 10 and result['params_digest'] == reference[0]
  assert [r['step'] for r in read_metrics(workdir)] == [10, 20, 30]


def test_first_checkpoint_refused_leaves_nothing_and_warns_before_compiling(
    one_disk, data_dir, reference, monkeypatch, capfd):
  workdir = os.path.join(one_disk.path, 'w')
  fill_at(monkeypatch, one_disk, 5, leave=LEAVE)
  monkeypatch.setattr(fileio, 'free_bytes', lambda path: 1000)  # for the warning
  with pytest.raises(fileio.WriteError) as e:
    train.train_and_evaluate(config(data_dir), workdir)
  # One checkpoint's size from the state's shapes = the bytes orbax saved in the reference.
  saved = checkpoints.Checkpoints(reference[1], keep=2).item_metadata(STEPS)
  size = fileio.format_bytes(checkpoints.state_bytes(saved))
  warning = (f'Warning: --workdir={workdir} has 1000 B free, but keep_checkpoints + 1 = 3 '
             f'checkpoints of ~{size} (params + optimizer state) need')
  assert warning in capfd.readouterr().out
  assert_one_line(e.value, capfd, 'checkpoint of step 10', 'No earlier checkpoint exists')
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == []
  assert not partial_files(workdir)

  one_disk.free()
  monkeypatch.undo()
  result = train.train_and_evaluate(config(data_dir), workdir)
  assert result['resumed_from'] == 0 and result['params_digest'] == reference[0]


def test_metrics_write_refused_keeps_earlier_lines_and_resumes(
    tmp_path, data_dir, reference, monkeypatch, capfd):
  """Injected: on a real disk the append usually fits the file's last block, the checkpoint
  fails first (the test above); here the metrics line is the first write refused."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  one_disk = InjectedDisk(str(tmp_path / 'disk'), monkeypatch)
  workdir = os.path.join(one_disk.path, 'w')
  fill_at(monkeypatch, one_disk, 15, leave=0, after_checkpoint=10)
  with pytest.raises(fileio.WriteError) as e:
    train.train_and_evaluate(config(data_dir), workdir)
  assert_one_line(e.value, capfd, 'the metrics of step 20', 'metrics.jsonl')
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(line)['step'] for line in f.read().splitlines()] == [10]  # no torn line
  (events,) = [n for n in os.listdir(workdir) if n.startswith('events.out.tfevents')]
  steps = {e.step for e in tf.compat.v1.train.summary_iterator(os.path.join(workdir, events))
           if e.summary.value}  # readable to its end: the earlier records are intact
  assert 10 in steps and steps <= {10, 20}
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == ['10']

  one_disk.free()
  monkeypatch.undo()
  result = train.train_and_evaluate(config(data_dir), workdir)
  assert result['resumed_from'] == 10 and result['params_digest'] == reference[0]
  assert [r['step'] for r in read_metrics(workdir)] == [10, 20, 30]


def test_full_disk_at_start_leaves_no_torn_lock(disk, data_dir, capfd):
  workdir = os.path.join(disk.path, 'w')
  os.makedirs(workdir)
  disk.fill(leave=0)
  with pytest.raises(fileio.WriteError) as e:
    train.train_and_evaluate(config(data_dir), workdir)
  assert_one_line(e.value, capfd, 'the lock', 'lock.json')
  assert os.listdir(workdir) == []  # no lock a rerun would have to wait out


def test_sighup_saves_like_sigterm_and_resume_matches(tmp_path, data_dir, reference,
                                                      monkeypatch):
  workdir = str(tmp_path / 'w')
  with monkeypatch.context() as m:
    m.setattr(pipeline, 'get_train_iterator', _sigterm_at(15, signal.SIGHUP))
    first = train.train_and_evaluate(config(data_dir), workdir)
  assert first['preempted'] and first['signal'] == 'SIGHUP' and first['step'] == 15
  assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # handler restored
  result = train.train_and_evaluate(config(data_dir), workdir)
  assert result['resumed_from'] == 15 and result['params_digest'] == reference[0]


def _config_file(tmp_path, data_dir):
  """An experiment file whose config is `config(data_dir)`, for main.py in a subprocess."""
  path = tmp_path / 'tiny_digits.py'
  path.write_text(f'import sys\nsys.path.insert(0, {os.path.join(ROOT, "tests")!r})\n'
                  'from test_disk_full import config\n\n\n'
                  f'def get_config(arg=None):\n  return config({data_dir!r})\n')
  return str(path)


def _env(settings):
  env = dict(os.environ, **{k.upper(): str(v) for k, v in settings.items()})
  env['JAX_DISABLE_MOST_OPTIMIZATIONS'] = '1'  # jax reads booleans from '1'
  return env


# The run of main.py with every batch 0.2 s late, so that a signal lands mid-run.
_SLOW_MAIN = """
import runpy, sys, time
from mixer_flax.data import pipeline
original = pipeline.get_train_iterator
def slow(*args, **kwargs):
  for batch in original(*args, **kwargs):
    time.sleep(0.2)
    yield batch
pipeline.get_train_iterator = slow
sys.argv[0] = 'mixer_flax.main'
runpy.run_module('mixer_flax.main', run_name='__main__')
"""


def _drain(fd, chunks, stop):
  while not stop.is_set():
    if select.select([fd], [], [], 0.1)[0]:
      try:
        data = os.read(fd, 1 << 16)
      except OSError:
        return
      if not data:
        return
      chunks.append(data)


@pytest.mark.skipif(not shutil.which('setsid'), reason='needs setsid (util-linux) for a tty')
@pytest.mark.slow
def test_closing_the_terminal_saves_and_exits_129(tmp_path, data_dir, reference, fast_compile):
  """main.py on a pseudo-terminal that is then closed: the kernel sends SIGHUP."""
  workdir = str(tmp_path / 'w')
  master, slave = pty.openpty()
  proc = subprocess.Popen(
      ['setsid', '--ctty', sys.executable, '-c', _SLOW_MAIN,
       f'--config={_config_file(tmp_path, data_dir)}', f'--workdir={workdir}'],
      cwd=ROOT, env=_env(fast_compile), stdin=slave, stdout=slave, stderr=slave)
  os.close(slave)
  chunks, stop = [], threading.Event()
  reader = threading.Thread(target=_drain, args=(master, chunks, stop))
  reader.start()
  try:
    metrics = os.path.join(workdir, 'metrics.jsonl')
    deadline = time.time() + 240
    while not (os.path.exists(metrics) and os.path.getsize(metrics)) and proc.poll() is None:
      assert time.time() < deadline, 'no progress logged'
      time.sleep(0.1)
  finally:
    stop.set()
    reader.join()
    os.close(master)  # the terminal is gone
  assert proc.wait(timeout=120) == 129, b''.join(chunks).decode()[-3000:]
  shown = b''.join(chunks).decode()
  assert 'Traceback' not in shown, shown[-3000:]
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert all(n.isdigit() for n in names), names  # no partial checkpoint
  saved = max(int(n) for n in names)
  assert 10 < saved < STEPS  # saved at the step the terminal closed, not at a checkpoint_every
  assert not os.path.exists(os.path.join(workdir, 'lock.json'))
  result = train.train_and_evaluate(config(data_dir), workdir)
  assert result['resumed_from'] == int(saved) and result['params_digest'] == reference[0]


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line(tmp_path, data_dir, reference):
  workdir = str(tmp_path / 'w')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'mixer_flax.main', '--config=experiments/digits.py',
       f'--workdir={workdir}', f'--config.data_dir={data_dir}'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lock = os.path.join(workdir, 'lock.json')
  deadline = time.time() + 240
  while not os.path.exists(lock) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGINT)  # the run holds its workdir: data checked, not training
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-3000:]
  logs = re.compile(r'^([IWEF]\d{4} |WARNING: All log messages)')  # absl / TF records aside
  ours = [line for line in (out + err).splitlines() if line.strip() and not logs.match(line)]
  assert ours == ['Interrupted (Ctrl-C) during start-up; nothing to save.'], err[-3000:]
  assert 'Traceback' not in err and not os.path.exists(lock)
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))
