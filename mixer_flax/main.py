r"""Entry point: `python -m mixer_flax.main --config=experiments/<file>.py[:arg] --workdir=DIR`.

  python -m mixer_flax.main --config=experiments/digits.py --workdir=workdirs/digits
  python -m mixer_flax.main --config=experiments/digits.py --dry_run   # look before leaping

Any config value can be overridden on the command line, e.g. `--config.total_steps=500
--config.base_lr=3e-3`; an unknown key or a value of the wrong type is rejected while the
flags are parsed, before anything is built or compiled. `--dry_run` checks and resolves the
config and prints every key with its value and meaning, and the run's plan (steps, epochs,
devices, per-device batch, checkpoints, evaluators), without compiling or writing anything.

Errors print one line, the cause and what to do (`--verbose` adds the traceback and the
libraries' log messages); exit status 1. A rerun with another config is refused unless
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
import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mixer_flax import backends, entry
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
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Check and resolve the config, print every key with its value and '
    'meaning and the run\'s plan, then exit: nothing is compiled or written (--workdir '
    'optional).')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, 'Show library log messages and the traceback of an error (default: '
    'one line, the cause and what to do).')
HELP_FLAGS = ('-h', '-?', '--help', '--helpshort', '--helpfull')


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


def main(argv: list[str]) -> int:
  """Runs `train.train_and_evaluate` on the parsed config (or `--dry_run`); the exit status."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  if _CONFIG.value is None:
    raise app.UsageError('--config=experiments/<file>.py is required.')
  if not _WORKDIR.value and not _DRY_RUN.value:
    raise app.UsageError('--workdir is required (or --dry_run to only look).')
  backends.apply_xla_flags()  # before JAX starts a backend (XLA reads its flags then)
  entry.import_tensorflow()  # its start-up notices dropped unless --verbose
  file_config = _file_config()
  if _DRY_RUN.value:
    from mixer_flax import dry_run  # pylint: disable=g-import-not-at-top
    print(dry_run.describe(_CONFIG.value, workdir=_WORKDIR.value, file_config=file_config))
    return 0
  from mixer_flax.training import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  workdir_lib.check_path(_WORKDIR.value)  # before JAX starts: a file, not a directory?
  maybe_initialize_distributed()
  import jax  # pylint: disable=g-import-not-at-top

  from mixer_flax import train  # pylint: disable=g-import-not-at-top

  try:
    result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, file_config=file_config,
                                      allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except KeyboardInterrupt:
    if _VERBOSE.value:
      raise
    entry.fail(f'interrupted (Ctrl-C); rerun the same command to continue from the newest '
               f'checkpoint in {_WORKDIR.value} (if one was saved).', entry.EXIT_INTERRUPTED)
  if jax.process_count() > 1:  # lets operators (and tests) check that processes agree
    summary = {k: result.get(k) for k in ('process_index', 'step', 'train_loss',
                                          'eval_accuracy', 'eval_count', 'params_digest')}
    print(f'Process {jax.process_index()}/{jax.process_count()} result: '
          f'{json.dumps(summary)}', flush=True)
  if result.get('preempted'):  # 0 after SIGTERM; 128 + the signal after Ctrl-C or SIGHUP
    return preemption.EXIT_STATUS.get(result.get('signal'), 0)
  return 0


def _file_config():
  """The config as its file defines it (no overrides), for `validate.override_problems`."""
  from mixer_flax import config as config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_experiment(flags.FLAGS['config'].config_filename)


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
  entry.fail(f'--config={spec}: cannot load {path} '
             f'({"no such file" if not os.path.exists(path) else e}; relative paths start at '
             f'{os.getcwd()}). Give an experiments/*.py file.')


def parse_flags(argv: list[str]) -> list[str]:
  """Parses absl flags; bad flags, overrides and config files become one-line errors."""
  verbose = '--verbose' in argv
  # A second run in one process (tests) starts from the defaults; ml_collections defines one
  # flag per override while parsing.
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)
  flags.FLAGS.unparse_flags()
  try:
    rest = flags.FLAGS(argv)
    if _CONFIG.value is not None:
      _CONFIG.value.keys()  # ml_collections defers a config file that fails to load to first use
  except flags.Error as e:
    entry.fail(f'{_flag_error(e, verbose)} (python -m mixer_flax.main --help lists the flags)')
  except OSError as e:  # the config file could not be loaded (an override touched it)
    _config_file_error(e, argv, verbose)
  except (AttributeError, KeyError) as e:  # ml_collections: the override's key does not exist
    entry.fail(_unknown_key(e, argv))
  return rest


def usage() -> str:
  """What `--help` prints: this module's doc, the flags, how to list the config keys."""
  module = sys.modules[__name__]
  return (f'{__doc__}\nFlags:\n{flags.FLAGS.module_help(module)}\n\nEvery config key with its '
          'value and one-line meaning, and the plan of the run:\n  python -m mixer_flax.main '
          '--config=experiments/digits.py --dry_run   (add --config.KEY=VALUE overrides)\n'
          'Keys and their defaults: mixer_flax/config.py (base_config).')


def run(argv: list[str] | None = None) -> int:
  """`python -m mixer_flax.main`: parses the flags and runs `main`; returns the exit status."""
  argv = list(sys.argv if argv is None else argv)
  if any(a in HELP_FLAGS for a in argv[1:]):
    print(usage())
    return 0
  verbose = '--verbose' in argv
  entry.quiet(verbose)
  saved, sys.argv = sys.argv, argv  # ml_collections reads the --config.KEY overrides there
  try:
    rest = parse_flags(argv)
    return entry.invoke(_main_or_usage_error, rest, verbose=verbose)
  finally:
    sys.argv = saved


def _main_or_usage_error(argv: list[str]) -> int:
  try:
    return main(argv)
  except app.UsageError as e:
    entry.fail(f'{e} (python -m mixer_flax.main --help lists the flags)')


if __name__ == '__main__':
  preemption.exit_on_interrupt()  # Ctrl-C / SIGHUP outside the step loop: one line, at once
  sys.exit(run())
