r"""Entry point: `python -m mixer_flax.main --config=experiments/<file>.py[:arg] --workdir=DIR`.

Any config value can be overridden on the command line, e.g. `--config.total_steps=500
--config.base_lr=3e-3`; an unknown key or a value of the wrong type is rejected while the
flags are parsed, before anything is built or compiled.

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
import sys

from absl import app, flags, logging
from ml_collections import config_flags

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
  maybe_initialize_distributed()
  import jax

  from mixer_flax import train

  result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if jax.process_count() > 1:  # lets operators (and tests) check that processes agree
    summary = {k: result.get(k) for k in ('process_index', 'step', 'train_loss',
                                          'eval_accuracy', 'eval_count', 'params_digest')}
    print(f'Process {jax.process_index()}/{jax.process_count()} result: '
          f'{json.dumps(summary)}', flush=True)
  if jax.process_index() == 0:
    if result.get('preempted'):
      print(f'Preempted at step {result["step"]}; checkpoint saved in {_WORKDIR.value}. '
            'Rerun the same command to resume.', flush=True)
    else:
      print(f'Final eval accuracy: {result["eval_accuracy"]:.4f} (top-5 '
            f'{result["eval_top5_accuracy"]:.4f}, loss {result["eval_loss"]:.4f}) at step '
            f'{result["step"]}; wall time {result["wall_time_s"]:.0f} s. Outputs in '
            f'{_WORKDIR.value}.', flush=True)
  return 0


def parse_flags(argv: list[str]) -> list[str]:
  """Parses absl flags; an unknown `--config.<key>` override becomes a one-line error."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'FATAL Flags parsing error: {e}\nPass --helpshort or --helpfull to see help.')
  except (AttributeError, KeyError) as e:  # ml_collections: the override's key does not exist
    key = str(e).strip('"\'')
    given = [a for a in argv[1:] if a.startswith('--config.') and key in a]
    sys.exit(f'FATAL Flags parsing error: {" ".join(given) or key}: the config has no setting '
             f'{key!r}. Check the spelling against the config file (--config=...).')


def run() -> None:
  """Parses the flags and runs `main` (what `python -m mixer_flax.main` does)."""
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  sys.exit(run())
