"""The command line: flag/config errors before any work, a real SIGTERM, resume, final print."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240


def command(workdir, *extra, config='experiments/digits.py'):
  return [sys.executable, '-m', 'mixer_flax.main', f'--config={config}', f'--workdir={workdir}',
          *extra]


def run(cmd, timeout=TIMEOUT):
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp() / 'tfds_digits')


@pytest.mark.parametrize('flag, pattern', [
    ('--config.no_such_key=1', r"no setting 'no_such_key'"),
    ('--config.pp.no_such_key=1', r"--config\.pp\.no_such_key=1.*no setting"),
    ('--config.batch=abc', r'config\.batch=abc'),
    ('--config.base_lr=fast', r'config\.base_lr=fast'),
    ('--config.pp.flip=maybe', r'config\.pp\.flip=maybe'),
])
def test_bad_override_fails_while_parsing_flags(flag, pattern, tmp_path):
  workdir = tmp_path / 'w'
  proc = run(command(str(workdir), flag), timeout=120)
  assert proc.returncode != 0
  assert re.search(pattern, proc.stderr), proc.stderr[-2000:]
  assert not workdir.exists()  # failed before building anything


@pytest.mark.parametrize('args, pattern', [
    (['--config.base_rl=0.1'],
     r"--config\.base_rl=0\.1: the config has no setting 'base_rl'\. Did you mean 'base_lr'\?"),
    (['--config=experiments/no_such_file.py'],
     r'cannot load experiments/no_such_file\.py \(no such file'),
    (['--config=experiments/digits.py:abc'],
     r'--config=experiments/digits\.py:abc: the config file raised ValueError: .*abc'),
    (['--workdir=FILE'], r'--workdir=.*FILE is a file, not a directory'),
    (['--config.model_name=Mixer-X_99'],
     r"FATAL ValueError: Invalid config: config\.model_name='Mixer-X_99' is unknown"),
])
def test_errors_are_one_line_without_traceback(args, pattern, tmp_path, data_dir):
  (tmp_path / 'FILE').write_text('not a directory')
  args = [a.replace('FILE', str(tmp_path / 'FILE')) for a in args]
  config = next((a.split('=', 1)[1] for a in args if a.startswith('--config=')),
                'experiments/digits.py')
  workdir = next((a.split('=', 1)[1] for a in args if a.startswith('--workdir=')),
                 str(tmp_path / 'w'))
  rest = [a for a in args if not a.startswith(('--config=', '--workdir='))]
  proc = run(command(workdir, f'--config.data_dir={data_dir}', *rest, config=config))
  assert proc.returncode == 1
  assert re.search(pattern, proc.stderr), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr and '\\n' not in proc.stderr, proc.stderr[-3000:]
  assert len(re.findall('FATAL', proc.stderr)) == 1
  assert not (tmp_path / 'w').exists()


def test_verbose_shows_the_traceback(tmp_path):
  proc = run(command(str(tmp_path / 'w'), '--verbose', config='experiments/digits.py:abc'))
  assert proc.returncode == 1 and 'Traceback (most recent call last)' in proc.stderr


def test_non_divisible_batch_names_the_setting(tmp_path, data_dir):
  proc = run(command(str(tmp_path / 'w'), '--config.batch=100',
                     f'--config.data_dir={data_dir}'))
  assert proc.returncode != 0
  assert 'config.batch=100' in proc.stderr, proc.stderr[-2000:]


def _wait_for_progress(workdir, proc, deadline):
  path = os.path.join(workdir, 'metrics.jsonl')
  while time.time() < deadline:
    if proc.poll() is not None:
      return False
    if os.path.exists(path) and os.path.getsize(path) > 0:
      return True
    time.sleep(0.5)
  return False


def test_sigterm_saves_then_rerun_resumes_and_prints_accuracy(tmp_path, data_dir):
  workdir = str(tmp_path / 'w')
  common = [f'--config.data_dir={data_dir}', '--config.progress_every=5',
            '--config.checkpoint_every=1000', '--config.evals.eval.every=1000',
            '--config.warmup_steps=5']
  cmd = command(workdir, *common, '--config.total_steps=400')
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  try:
    assert _wait_for_progress(workdir, proc, time.time() + TIMEOUT), 'no progress logged'
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, err[-3000:]
  assert 'Preempted at step' in out, out
  stopped = int(out.split('Preempted at step ')[1].split(';')[0])
  assert 5 <= stopped < 400
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == [str(stopped)]

  # Rerun the same command with fewer remaining steps: resumes, finishes, prints accuracy.
  rerun = run(command(workdir, *common, f'--config.total_steps={stopped + 10}'))
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert 'Resuming from the checkpoint of step' in rerun.stdout
  assert 'Final eval accuracy:' in rerun.stdout, rerun.stdout
  steps = [json.loads(line)['step'] for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert steps == sorted(set(steps)) and steps[-1] == stopped + 10
  assert os.path.exists(os.path.join(workdir, 'final.npz'))
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['total_steps'] == stopped + 10
