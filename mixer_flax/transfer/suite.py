"""Runs a transfer suite (VTAB-1k or Avg-5) task by task through the trainer.

Layout under the suite directory DIR (every run is an ordinary trainer workdir):

  DIR/<task>/val_lr<lr>/   sweep point: train on the task's train split, score val
  DIR/<task>/test_lr<lr>/  the chosen lr again on train+val, scored on the test split
  DIR/results.jsonl        one row per finished task (rewritten atomically per row)

Resuming: a task with a row is not run again; a finished run (its result.json) is read back;
an interrupted run resumes from its own checkpoint (`train.train_and_evaluate`). Every
dataset is checked before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections

from mixer_flax import fileio, train
from mixer_flax.data import pipeline
from mixer_flax.transfer import check

RESULTS = 'results.jsonl'


class Preempted(RuntimeError):
  """A run stopped on SIGTERM after saving its checkpoint; rerunning the suite resumes it."""


@dataclasses.dataclass(frozen=True)
class SuiteTask:
  """One task of a suite: its datasets and how to configure one fine-tuning run."""

  name: str
  label: str
  group: str  # 'natural' | 'specialized' | 'structured' for VTAB, 'avg5' otherwise
  dataset: str  # tfds name (with version pattern) that must be prepared
  make_config: Callable[[str, float], ml_collections.ConfigDict]  # (stage, lr) -> config


def read_results(directory: str) -> dict[str, dict[str, Any]]:
  """Rows of DIR/results.jsonl keyed by task (missing file: no rows)."""
  path = os.path.join(directory, RESULTS)
  if not os.path.exists(path):
    return {}
  rows = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        rows[row['task']] = row
  return rows


def append_result(directory: str, row: Mapping[str, Any]) -> None:
  """Adds one row: the file is rewritten to a temporary name and renamed (atomic)."""
  path = os.path.join(directory, RESULTS)
  old = ''
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
  fileio.write_atomic(path, old + json.dumps(dict(row), sort_keys=True) + '\n',
                      what='the suite results')


def select_lr(val_accuracy: Mapping[float, float]) -> float:
  """The learning rate with the best validation accuracy (ties: the smallest lr)."""
  if not val_accuracy:
    raise ValueError('No sweep results to select a learning rate from.')
  return max(sorted(val_accuracy), key=lambda lr: val_accuracy[lr])


def _finished_result(workdir: str, total_steps: int) -> dict[str, Any] | None:
  path = os.path.join(workdir, 'result.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  done = result.get('step') == total_steps and not result.get('preempted')
  return result if done else None


def run_one(config: ml_collections.ConfigDict, workdir: str,
            trainer: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
  """A finished run's result.json, else train (resuming from its checkpoint if any)."""
  result = _finished_result(workdir, int(config.total_steps))
  if result is None:
    result = (trainer or train.train_and_evaluate)(config, workdir)
    if result.get('preempted'):
      raise Preempted(f'Preempted during {workdir} (checkpoint saved at step '
                      f'{result.get("step")}); rerun the same command to resume.')
  return result


def _lr_name(lr: float) -> str:
  return f'{lr:g}'


def run_task(task: SuiteTask, *, directory: str, lrs: Sequence[float],
             overrides: Mapping[str, Any] | None = None, log: Callable[[str], None] = print,
             trainer: Callable[..., dict[str, Any]] | None = None) -> dict[str, Any]:
  """Sweeps `lrs` on the val split (skipped for a single lr), reruns the best on test.

  Returns:
    The task's results row.
  """
  def config(stage: str, lr: float) -> ml_collections.ConfigDict:
    c = task.make_config(stage, lr)
    for key, value in (overrides or {}).items():
      _set(c, key, value)
    return c

  val: dict[float, float] = {}
  if len(lrs) > 1:
    for lr in lrs:
      workdir = os.path.join(directory, task.name, f'val_lr{_lr_name(lr)}')
      log(f'[{task.name}] lr {lr:g}: fine-tuning on the val split ({workdir})')
      val[lr] = float(run_one(config('val', lr), workdir, trainer)['eval_accuracy'])
  best = select_lr(val) if val else float(lrs[0])
  workdir = os.path.join(directory, task.name, f'test_lr{_lr_name(best)}')
  log(f'[{task.name}] lr {best:g}: fine-tuning on train+val, scoring test ({workdir})')
  final_config = config('test', best)
  result = run_one(final_config, workdir, trainer)
  return dict(
      task=task.name, label=task.label, group=task.group, dataset=task.dataset,
      lr=best, val_accuracy={_lr_name(k): v for k, v in val.items()},
      num_classes=int(final_config.num_classes),
      train_count=pipeline.get_dataset_info(final_config).num_train_examples,
      accuracy=float(result['eval_accuracy']), test_count=int(result.get('eval_count', 0)),
      steps=int(final_config.total_steps), image_size=int(final_config.image_size),
      model_name=final_config.model_name, pretrained=final_config.get('pretrained_path'),
      train_split=final_config.train_split, test_split=final_config.eval_split,
      params_digest=result.get('params_digest'))


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """config['a.b'] = value, naming the key when it does not exist."""
  *parents, leaf = key.split('.')
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise KeyError(f'--set {key}=...: the fine-tuning config has no key {key!r}.')
  node[leaf] = value


def run_suite(tasks: Sequence[SuiteTask], *, directory: str, lrs: Sequence[float],
              data_dir: str | None, overrides: Mapping[str, Any] | None = None,
              extra: Mapping[str, Any] | None = None, log: Callable[[str], None] = print,
              trainer: Callable[..., dict[str, Any]] | None = None) -> list[dict[str, Any]]:
  """Checks every dataset, then runs the tasks without a results row.

  Args:
    tasks: the tasks, in order.
    directory: the suite directory (see module doc).
    lrs: learning-rate grid.
    data_dir: tfds data_dir.
    overrides: config keys ('a.b' -> value) set on every run.
    extra: fields added to every results row (suite name, paper row, ...).
    log: progress printer.
    trainer: `train.train_and_evaluate` (tests inject failures through it).

  Returns:
    The rows of `tasks`, in order.

  Raises:
    FileNotFoundError: some dataset is not prepared (nothing was trained).
  """
  statuses = check.check_datasets([t.dataset for t in tasks], data_dir)
  message = check.missing_message(statuses, data_dir)
  if message:
    raise FileNotFoundError(message)
  os.makedirs(directory, exist_ok=True)
  done = read_results(directory)
  for task in tasks:
    if task.name in done:
      log(f'[{task.name}] done: {100 * done[task.name]["accuracy"]:.2f}% (from {RESULTS})')
      continue
    row = {**run_task(task, directory=directory, lrs=lrs, overrides=overrides, log=log,
                      trainer=trainer), **(extra or {})}
    if jax.process_index() == 0:  # every process runs the suite; one writes the rows
      append_result(directory, row)
    done[task.name] = row
    log(f'[{task.name}] test accuracy {100 * row["accuracy"]:.2f}%')
  return [done[t.name] for t in tasks]
