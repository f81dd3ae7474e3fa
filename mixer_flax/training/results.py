"""`result.json`: a run's final metrics, and one record per leg (each start of the command).

A resumed run (after a preemption, or to extend `total_steps`) adds a leg instead of erasing
the first one's facts. The top level holds the latest leg's result as before (`step`,
`eval_accuracy`, `wall_time_s`, ...), so readers of earlier files keep working; `legs` lists
every leg (`LEG_KEYS`) and `total_wall_time_s` sums their wall times.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mixer_flax import fileio
from mixer_flax.training.metrics import format_duration

FILE = 'result.json'
LEG_KEYS = ('started', 'resumed_from', 'step', 'preempted', 'signal', 'wall_time_s')


def read(workdir: str, *, warn: Callable[[str], None] = print) -> dict[str, Any]:
  """The workdir's result.json ({} if there is none; a damaged one is reported and ignored)."""
  path = fileio.join(workdir, FILE)
  if not fileio.exists(path):
    return {}
  try:
    with fileio.open_file(path) as f:
      record = json.load(f)
    if not isinstance(record, dict):
      raise ValueError('not a JSON object')
  except ValueError as e:
    warn(f'Warning: {path} is damaged ({e}); it is rewritten at the end of this run without '
         'the earlier legs.')
    return {}
  return record


def with_leg(previous: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
  """The new result.json: `result` at the top level, its leg appended to `previous`'s."""
  legs = list(previous.get('legs', []))
  if previous and not legs:  # a file written before legs were recorded: its one leg
    legs = [{k: previous[k] for k in LEG_KEYS if k in previous}]
  legs.append({k: result[k] for k in LEG_KEYS if k in result})
  total = sum(float(leg.get('wall_time_s', 0.0)) for leg in legs)
  return {**result, 'legs': legs, 'total_wall_time_s': total}


def final_metrics(previous: dict[str, Any], step: int) -> dict[str, Any]:
  """The evaluator metrics of a finished run at `step` in `previous` ({} if it did not finish)."""
  if previous.get('step') != step or previous.get('preempted', False):
    return {}
  return {k: v for k, v in previous.items() if k not in LEG_KEYS and k not in (
      'legs', 'total_wall_time_s', 'process_index', 'params_digest')}


def has_metrics(metrics: dict[str, Any], evaluator_name: str) -> bool:
  """Whether `metrics` hold evaluator `evaluator_name`'s ('<name>_...' or '<name>/...')."""
  return any(k.startswith((f'{evaluator_name}_', f'{evaluator_name}/')) for k in metrics)


def end_line(result: dict[str, Any], workdir: str) -> str:
  """The one line that says how a run ended: done (with the final accuracy) or preempted."""
  step, took = result['step'], format_duration(result['wall_time_s'])
  if result.get('preempted'):
    how = {'SIGINT': 'Interrupted (Ctrl-C)', 'SIGHUP': 'Hung up (SIGHUP)'}.get(
        result.get('signal'), 'Preempted (SIGTERM)')
    return (f'{how} at step {step}: checkpoint saved in {workdir}; rerun the same command to '
            'resume.')
  if 'eval_accuracy' in result:
    return (f'Final eval accuracy: {result["eval_accuracy"]:.4f} (top-5 '
            f'{result["eval_top5_accuracy"]:.4f}, loss {result["eval_loss"]:.4f}) at step '
            f'{step}; done in {took}. Outputs in {workdir}.')
  return f'Done at step {step} in {took}. Outputs in {workdir}.'
