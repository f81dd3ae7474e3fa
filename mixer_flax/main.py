r"""Entry point: `python -m mixer_flax.main --config=experiments/<file>.py[:arg] --workdir=DIR`.

Any config value can be overridden on the command line, e.g. `--config.total_steps=500
--config.base_lr=3e-3`; an unknown key or a value of the wrong type is rejected while the
flags are parsed, before anything is built or compiled.

Errors print one line, the cause and what to do (`--verbose` or `--verbosity=1` adds the
traceback); exit status 1. A rerun with another config is refused unless
`--allow_config_change` (`training/workdir.py`). Exit status 0 when done or preempted by
SIGTERM (checkpoint saved), 130 after Ctrl-C and 129 after SIGHUP (the terminal was closed):
128 + the signal. During training both save a checkpoint first (a second Ctrl-C stops at
once); before and after it, they stop at once with one line (`training/preemption.py`).
A file the disk refuses (full, quota, read-only) stops the run with one line naming it.

Multi-host (one process per host, each seeing its local accelerators): give
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or the environment
variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or
`--distributed=auto` on clusters JAX detects by itself (Cloud TPU pod slices, SLURM, ...).
`jax.distributed.initialize` is then called before any device is touched. Every process
runs the same command; only process 0 writes metrics, the config and `final.npz`.
"""

from __future__ import annotations

import json
import logging as logging_std
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mixer_flax.training import preemption

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/digits.py[:arg].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output directory (checkpoints, metrics, '
                               'final.npz); a rerun with the same workdir resumes.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'HOST:PORT of process 0 for multi-host runs '
    '(default: $JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Number of processes of a multi-host run (default: $JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process\'s index in a multi-host run (default: $JAX_PROCESS_ID).')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'off', ['off', 'auto'], "'auto': call jax.distributed.initialize() with "
    'cluster auto-detection (TPU pod slices, SLURM, ...), even without the flags above.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, 'Resume --workdir although the config differs from its '
    'saved config.json in settings that may not change on resume (the old config is kept as '
    'config.step<N>.json).')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show the traceback of an error (default: one line, the cause and what '
    'to do; also shown with --verbosity=1).')

EXIT_ERROR = 1
EXIT_INTERRUPTED = preemption.EXIT_STATUS['SIGINT']  # 130: the shell's status after Ctrl-C
STOPPED = {'SIGINT': 'Interrupted', 'SIGHUP': 'Hung up (SIGHUP)', 'SIGTERM': 'Preempted'}
# Errors a user can cause (bad config, files, data, NaN loss): one line unless --verbose.
USER_ERRORS = (ValueError, OSError, FloatingPointError, RuntimeError)


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value not in (None, '') else None


def maybe_initialize_distributed() -> bool:
  """Initialises multi-host JAX from the flags / environment; returns whether it did."""
  import jax

  address = _COORDINATOR.value or os.environ.get('JAX_COORDINATOR_ADDRESS')
  num_processes = _NUM_PROCESSES.value
  if num_processes is None:
    num_processes = _env_int('JAX_NUM_PROCESSES')
  process_id = _PROCESS_ID.value
  if process_id is None:
    process_id = _env_int('JAX_PROCESS_ID')
  if not address and _DISTRIBUTED.value == 'off':
    if num_processes not in (None, 1) or process_id not in (None, 0):
      raise app.UsageError('--num_processes/--process_id need --coordinator_address '
                           '(or JAX_COORDINATOR_ADDRESS).')
    return False
  if address and (num_processes is None or process_id is None):
    raise app.UsageError(f'--coordinator_address={address} also needs --num_processes and '
                         '--process_id (or JAX_NUM_PROCESSES and JAX_PROCESS_ID).')
  # CPU processes exchange collectives through gloo (no effect on GPU/TPU backends).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=address, num_processes=num_processes,
                             process_id=process_id)
  logging.info('Process %d of %d; %d local / %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


class _QuietLibraries(logging_std.Filter):
  """Drops INFO chatter of orbax (a dozen lines per checkpoint); warnings still pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or '/orbax/' not in record.pathname


def main(argv: list[str]) -> int:
  """Runs `train.train_and_evaluate` on the parsed config; prints the final accuracy."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if _CONFIG.value is None:
    raise app.UsageError('--config=experiments/<file>.py is required.')
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required.')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  from mixer_flax.training import workdir as workdir_lib
  try:
    workdir_lib.check_path(_WORKDIR.value)  # before JAX starts: a file, not a directory?
  except workdir_lib.WorkdirError as e:
    print(f'FATAL {e}', file=sys.stderr)
    return EXIT_ERROR
  maybe_initialize_distributed()
  import jax

  from mixer_flax import train

  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value,
                                      allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except KeyboardInterrupt:
    if _verbose():
      raise
    print('Interrupted (Ctrl-C) before training started; nothing to save.', file=sys.stderr)
    return EXIT_INTERRUPTED
  except USER_ERRORS as e:
    if _verbose():
      raise
    print(f'FATAL {type(e).__name__}: {e}\n(--verbose shows the traceback)', file=sys.stderr)
    return EXIT_ERROR
  if jax.process_count() > 1:  # lets operators (and tests) check that processes agree
    summary = {k: result.get(k) for k in ('process_index', 'step', 'train_loss',
                                          'eval_accuracy', 'eval_count', 'params_digest')}
    print(f'Process {jax.process_index()}/{jax.process_count()} result: '
          f'{json.dumps(summary)}', flush=True)
  if jax.process_index() == 0:
    if result.get('preempted'):
      print(f'{STOPPED.get(result.get("signal"), "Preempted")} at step {result["step"]}; '
            f'checkpoint saved in {_WORKDIR.value}. Rerun the same command to resume.',
            flush=True)
      return preemption.EXIT_STATUS.get(result.get('signal'), 0)
    else:
      print(f'Final eval accuracy: {result["eval_accuracy"]:.4f} (top-5 '
            f'{result["eval_top5_accuracy"]:.4f}, loss {result["eval_loss"]:.4f}) at step '
            f'{result["step"]}; wall time {result["wall_time_s"]:.0f} s. Outputs in '
            f'{_WORKDIR.value}.', flush=True)
  return 0


def _verbose() -> bool:
  return bool(flags.FLAGS.is_parsed() and _VERBOSE.value) or logging.level_debug()


def _flag_error(e: Exception, verbose: bool) -> str:
  """The flag error in one line; a traceback ml_collections embeds is cut to its last line."""
  text = str(e)
  if 'Traceback (most recent call last)' in text and not verbose:
    head = text.split('Error whilst parsing config file')[0].rstrip(': \n')
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    text = f'{head}: the config file raised {last}'
  return text


def _unknown_key(e: Exception, argv: list[str]) -> str:
  """'--config.x=1: the config has no setting 'x'. Did you mean "y"?' from ml_collections'."""
  from mixer_flax import config as config_lib  # pylint: disable=g-import-not-at-top

  inner = e.args[0] if e.args and isinstance(e.args[0], KeyError) else e
  text = str(inner.args[0] if inner.args else inner)  # args[0]: the raw text, not its repr
  key, _, hint = text.partition('\n')
  key = key.strip('"\'')
  given = [a for a in argv[1:] if a.startswith('--config.') and key in a.split('=')[0]]
  full = given[-1].split('=')[0][len('--config.'):] if given else key
  if full in config_lib.REPLACED_KEYS:
    return f'{" ".join(given)}: config.{full} was replaced by {config_lib.REPLACED_KEYS[full]}.'
  match = re.search(r'Did you mean "([^"]+)"', hint)
  return (f'{" ".join(given) or key}: the config has no setting {key!r}.'
          + (f' Did you mean {match.group(1)!r}?' if match else '')
          + ' Check the spelling against the config file (--config=...).')


def _config_file_error(e: OSError, argv: list[str], verbose: bool) -> None:
  """Exits with one line for a config file that cannot be loaded."""
  if verbose:
    raise e
  given = [a for a in argv if a.startswith('--config=')] or ['--config=?']
  spec = given[-1].split('=', 1)[1]
  path = spec.split(':')[0]
  sys.exit(f'FATAL --config={spec}: cannot load {path} '
           f'({"no such file" if not os.path.exists(path) else e}; relative paths start at '
           f'{os.getcwd()}). Give an experiments/*.py file.')


def parse_flags(argv: list[str]) -> list[str]:
  """Parses absl flags; bad flags, overrides and config files become one-line errors."""
  verbose = '--verbose' in argv
  try:
    rest = flags.FLAGS(argv)
    _CONFIG.value.keys()  # ml_collections defers a config file that fails to load to first use
  except flags.Error as e:
    sys.exit(f'FATAL Flags parsing error: {_flag_error(e, verbose)}\n'
             'Pass --helpshort or --helpfull to see help.')
  except OSError as e:  # the config file could not be loaded (an override touched it)
    _config_file_error(e, argv, verbose)
  except (AttributeError, KeyError) as e:  # ml_collections: the override's key does not exist
    sys.exit(f'FATAL Flags parsing error: {_unknown_key(e, argv)}')
  return rest


def run() -> None:
  """Parses the flags and runs `main` (what `python -m mixer_flax.main` does)."""
  preemption.exit_on_interrupt()  # Ctrl-C / SIGHUP before the step loop: one line, no traceback
  if '--verbose' not in sys.argv:  # TensorFlow's C++ warnings repeat an error reported in one
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # line (a refused TensorBoard write)
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  sys.exit(run())
