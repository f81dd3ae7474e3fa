"""`python -m mixer_flax.main` as a newcomer meets it: --help, --dry_run, every bad input in one
line before anything is built (in this process, capsys), preemption said once, `result.json`
legs, and the console of the README's digits command (one fresh interpreter).
"""

import json
import os
import pty
import re
import subprocess
import sys

import jax
import pytest
from entry_helpers import one_line_error
from test_train import _sigterm_at  # SIGTERM while fetching a step's batch

from mixer_flax import entry, fileio
from mixer_flax import main as main_lib
from mixer_flax.checkpoint import npz
from mixer_flax.data import pipeline
from mixer_flax.download import DownloadError
from mixer_flax.training import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A digits run small enough for a test: the README command's config with a tiny Mixer.
TINY = '''
from mixer_flax import config as config_lib


def get_config(arg=None):
  c = config_lib.load_experiment('experiments/digits.py')
  c.model.update(hidden_dim=32, num_blocks=2, tokens_mlp_dim=32, channels_mlp_dim=64)
  c.batch, c.batch_eval, c.total_steps, c.warmup_steps = 64, 360, int(arg or 20), 5
  c.progress_every, c.checkpoint_every, c.keep_checkpoints, c.tf_threads = 5, 10, 2, 1
  c.evals.eval.every = 10
  return c
'''


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory):
  path = tmp_path_factory.mktemp('experiments') / 'tiny.py'
  path.write_text(TINY)
  return str(path)


def no_compile(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('nothing may be built or compiled here')
  monkeypatch.setattr(step_lib, 'create_train_state', fail)
  monkeypatch.setattr(step_lib, 'make_train_step', fail)


def run_main(*args):
  return main_lib.run(['mixer_flax.main', *args])


# --- python -m mixer_flax.main ----------------------------------------------------------------

def test_help_exits_0_and_says_how_to_list_the_keys(capsys):
  assert run_main('--help') == 0
  out = capsys.readouterr().out
  assert '--dry_run' in out and '--workdir' in out and 'mixer_flax/config.py' in out


@pytest.mark.parametrize('args, pattern', [
    (['--config.no_such_key=1'], r"the config has no setting 'no_such_key'"),
    (['--config.base_rl=0.1'], r"--config\.base_rl=0\.1: .*Did you mean 'base_lr'\?"),
    (['--config.eval_every=5'], r'config\.eval_every was replaced by config\.evals'),
    (['--config.batch=abc'], r'config\.batch=abc'),
    (['--config=experiments/no_such_file.py'], r'cannot load experiments/no_such_file\.py \(no '),
    (['--config=experiments/digits.py:abc'], r'the config file raised ValueError: .*abc'),
    (['--workdir=FILE'], r'FILE is a file, not a directory'),
    (['--config.model_name=Mixer-X_99'], r"config\.model_name='Mixer-X_99' is unknown"),
    (['--config.batch=100'], r'config\.batch=100 is not divisible by .* 8'),
    (['--config.dataset=cifar10'], r"Dataset 'cifar10' is not prepared in data_dir=.*tfds build"),
    (['--no_such_flag'], r'Unknown command line flag'),
])
def test_main_errors_are_one_line_before_anything_is_built(args, pattern, data_dir, tmp_path,
                                                           capsys, monkeypatch):
  no_compile(monkeypatch)
  (tmp_path / 'FILE').write_text('not a directory')
  args = [a.replace('FILE', str(tmp_path / 'FILE')) for a in args]
  defaults = ['--config=experiments/digits.py', f'--workdir={tmp_path / "w"}',
              f'--config.data_dir={data_dir}']
  given = {a.split('=')[0] for a in args}
  argv = [d for d in defaults if d.split('=')[0] not in given] + args
  argv.sort(key=lambda a: not a.startswith('--config='))  # the file before its overrides
  line = one_line_error(capsys, lambda: run_main(*argv))
  assert re.search(pattern, line), line
  assert not (tmp_path / 'w').exists()


def test_verbose_raises_with_the_traceback(data_dir, tmp_path):
  with pytest.raises(ValueError, match='Mixer-X_99'):
    run_main('--config=experiments/digits.py', f'--workdir={tmp_path}', '--verbose',
             f'--config.data_dir={data_dir}', '--config.model_name=Mixer-X_99')


def test_overriding_the_dataset_names_every_key_left_for_the_old_one(data_dir, tmp_path, capsys,
                                                                     monkeypatch):
  """imagenet_b16 with --config.dataset=sklearn_digits once trained, then crashed in its
  final few-shot evaluation of imagenet2012: now everything is reported before step 1."""
  no_compile(monkeypatch)
  line = one_line_error(capsys, lambda: run_main(
      '--config=experiments/imagenet_b16.py', f'--workdir={tmp_path / "w"}',
      '--config.dataset=sklearn_digits', f'--config.data_dir={data_dir}',
      '--config.train_split=train', '--config.eval_split=test'))
  assert '--config.num_classes=10 (its class count)' in line
  assert '''--config.evals.fewshot.datasets="('sklearn_digits',)"''' in line
  assert "Dataset 'imagenet2012' is not prepared" in line  # the evaluator's data, checked too
  assert not (tmp_path / 'w').exists()


def test_finetune_recipe_offline_is_one_line(data_dir, tmp_path, capsys, monkeypatch):
  """The gs:// pretrained path is reached once, before training, and fails in one line."""
  no_compile(monkeypatch)
  exists = fileio.exists
  monkeypatch.setattr(fileio, 'exists', lambda p: exists(p) if fileio.is_local(p) else (
      pytest.fail(f'{p} checked through the file system')))

  def offline(path):
    raise DownloadError(f'{path} is unreachable (Could not resolve host); check the network.')
  monkeypatch.setattr(npz, 'check_readable', offline)
  line = one_line_error(capsys, lambda: run_main(
      '--config=experiments/finetune.py:Mixer-B_16,cifar10', f'--workdir={tmp_path / "w"}',
      f'--config.data_dir={data_dir}'))
  assert '2 problems before training' in line
  assert "Dataset 'cifar10' is not prepared" in line
  assert 'config.pretrained_path: gs://mixer_models/imagenet21k/Mixer-B_16.npz is unreachable' \
      in line


def test_dry_run_prints_every_key_and_the_plan_without_compiling(data_dir, capsys, monkeypatch):
  no_compile(monkeypatch)
  compiles = []
  listener = lambda event, duration, **kw: compiles.append(event)  # noqa: E731
  jax.clear_caches()  # anything run eagerly would compile again, and be seen
  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    assert run_main('--config=experiments/digits.py', '--dry_run', '--config.total_steps=300',
                    f'--config.data_dir={data_dir}') == 0
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  # Tracing shapes (eval_shape of the parameter count) is allowed; lowering or compiling not.
  assert not [e for e in compiles if 'compile' in e and not e.endswith('trace_duration')], compiles
  out = capsys.readouterr().out
  # (A first line says the digits were prepared when this test is the session's first user.)
  config, plan = out.split('config (* = changed on the command line):\n')[1].split('\nplan:\n')
  lines = config.splitlines()
  assert len(lines) > 40 and all('  # ' in line for line in lines if line.strip()), config
  assert re.search(r"\*total_steps +.*= 300 +# optimizer updates", config)
  assert re.search(r" num_classes +.*= 10 ", config)  # resolved from the dataset, not changed
  assert '300 of batch 128 = 26.7 epochs' in plan  # 1,437 training digits
  assert '1 process(es) x 8 cpu device(s): 16 examples per device per step' in plan
  assert 'every 250 steps and at the end (2 in all' in plan
  assert 'eval (classification) every 250 steps and at the end (2 runs): sklearn_digits[test]' \
      in plan


@pytest.mark.slow
def test_preempted_run_says_so_once_and_the_resumed_leg_keeps_the_first(
    tiny_config, data_dir, tmp_path, capsys, monkeypatch):
  workdir = str(tmp_path / 'w')
  args = [f'--config={tiny_config}', f'--workdir={workdir}', f'--config.data_dir={data_dir}']
  with monkeypatch.context() as m:
    m.setattr(pipeline, 'get_train_iterator', _sigterm_at(8))
    assert run_main(*args) == 0
  out = capsys.readouterr().out
  ends = [line for line in out.splitlines() if 'step 8' in line and 'loss' not in line]
  assert ends == [f'Preempted (SIGTERM) at step 8: checkpoint saved in {workdir}; rerun the '
                  'same command to resume.'], out
  with open(os.path.join(workdir, 'result.json')) as f:
    first = json.load(f)
  assert first['preempted'] and first['legs'][0]['step'] == 8

  assert run_main(*args) == 0
  out = capsys.readouterr().out
  assert 'Resuming from the checkpoint of step 8' in out
  assert re.search(r'^Final eval accuracy: 0\.\d{4} .* at step 20; done in', out, re.M), out
  with open(os.path.join(workdir, 'result.json')) as f:
    result = json.load(f)
  assert [leg['step'] for leg in result['legs']] == [8, 20]
  assert result['legs'][0] == first['legs'][0]  # the first leg's facts survive the resume
  assert result['total_wall_time_s'] == pytest.approx(
      first['wall_time_s'] + result['wall_time_s'])
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    steps = [json.loads(line)['step'] for line in f]
  assert steps == sorted(set(steps)) and steps[-1] == 20


def test_a_closed_pipe_stops_the_output_not_the_command(monkeypatch):
  read_end, write_end = os.pipe()
  os.close(read_end)  # `... | head -1` after head has exited: EPIPE
  monkeypatch.setattr(sys, 'stdout', open(write_end, 'w', buffering=1))
  lines = []

  def job():
    for i in range(3):
      print(f'step {i}')
      lines.append(i)
    return 'done'
  assert entry.invoke(job) == 'done' and lines == [0, 1, 2]


def test_a_terminal_gone_without_sighup_leaves_the_run_going(tiny_config, data_dir, tmp_path,
                                                            monkeypatch):
  """A `disown`ed run whose terminal closed: every write to it fails with EIO."""
  master, terminal = pty.openpty()
  os.close(master)
  monkeypatch.setattr(sys, 'stdout', open(terminal, 'w', buffering=1))
  workdir = str(tmp_path / 'w')
  assert run_main(f'--config={tiny_config}', f'--workdir={workdir}',
                  f'--config.data_dir={data_dir}') == 0
  with open(os.path.join(workdir, 'result.json')) as f:
    assert json.load(f)['step'] == 20
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['10', '20']


# Ctrl-C (from a thread, for its timing) once TensorFlow's import has begun.
CTRL_C_IN_TF_IMPORT = """
import os, signal, sys, threading, time
from mixer_flax import entry
from mixer_flax.training import preemption
preemption.exit_on_interrupt()
def ctrl_c_once_tensorflow_imports():
  while 'tensorflow' not in sys.modules:
    time.sleep(0.001)
  os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=ctrl_c_once_tensorflow_imports, daemon=True).start()
entry.import_tensorflow()
print('imported', flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_imports_still_says_one_line():
  """TensorFlow's import runs with stderr captured (its notices): the line must not go there."""
  code = CTRL_C_IN_TF_IMPORT
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=120)
  out, err = proc.stdout, proc.stderr
  assert proc.returncode == 130 and 'imported' not in out
  assert err.split() == 'Interrupted (Ctrl-C) during start-up; nothing to save.'.split(), err


# --- The README's digits command in a fresh interpreter: what a newcomer sees ---------------

@pytest.mark.slow
def test_digits_command_console_is_progress_lines_and_little_else(tmp_path):
  """Fresh interpreter and data_dir: TensorFlow/JAX/tfds notices, the clu copy of every
  progress line and tfds' "Downloading" wording must not reach the console."""
  cmd = [sys.executable, '-m', 'mixer_flax.main', '--config=experiments/digits.py:20',
         f'--workdir={tmp_path / "w"}', f'--config.data_dir={tmp_path / "tfds"}',
         '--config.progress_every=10', '--config.evals.eval.every=20']
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}  # as a user has it
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
  progress = [line for line in lines if re.match(r'step +\d+/20 +loss', line)]
  evals = [line for line in lines if line.startswith('step 20: eval_accuracy')]
  assert len(progress) == 2 and len(evals) == 1, lines
  assert lines[0].startswith('Preparing sklearn_digits in ') and 'nothing is downloaded' in lines[0]
  assert lines[-1].startswith('Final eval accuracy: ')
  assert len(lines) == len(progress) + len(evals) + 2, lines
  assert not proc.stderr.strip(), proc.stderr
