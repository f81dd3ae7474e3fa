"""Evaluators: what the trainer runs on the parameters every few steps (big_vision's `evals`).

`config.evals` lists them, one entry per evaluator: its `type` (a key of `EVALUATORS`), `every`
(steps) and the evaluator's own options (`OPTIONS` of its class), e.g.

    config.evals = dict(eval=dict(type='classification', every=1000),
                        fewshot=dict(type='fewshot', every=10_000, datasets=('cifar10',)))

Each runs every `every` steps and at the end of training: `evaluator.run(params) ->
{metric: value}` with metric names `<name>_accuracy`, `<name>_top5_accuracy`, `<name>_loss`,
`<name>_count` (classification) and `<name>/<dataset>_<k>shot` (few-shot).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import ml_collections


class Evaluator(Protocol):
  """Runs on the parameters every `every` steps and returns named metrics."""

  name: str
  every: int

  def run(self, params: Any) -> dict[str, float]:
    """Metrics of `params` (replicated over the local devices, or not)."""

  def data(self) -> list[tuple[str, str]]:
    """The (dataset, split) pairs it reads, checked before training starts."""


# type -> 'module:class', imported when used (the command lines' --help starts no JAX).
EVALUATORS = {'classification': 'mixer_flax.eval.classification:ClassificationEvaluator',
              'fewshot': 'mixer_flax.eval.fewshot:FewShotEvaluator'}


def evaluator_class(kind: str) -> type:
  """The class of evaluator type `kind` (a key of `EVALUATORS`)."""
  module, _, name = EVALUATORS[kind].partition(':')
  return getattr(importlib.import_module(module), name)


def entry_problems(name: str, entry: Any) -> list[str]:
  """What is wrong with `config.evals[name]` (type, every, option names), for `validate`."""
  entry = dict(entry or {})
  kind, every, problems = entry.get('type'), entry.get('every'), []
  if kind not in EVALUATORS:
    problems.append(f'config.evals.{name}.type={kind!r} must be one of {tuple(EVALUATORS)}')
  if not isinstance(every, int) or isinstance(every, bool) or every <= 0:
    problems.append(f'config.evals.{name}.every={every!r} must be a positive number of steps')
  if kind not in EVALUATORS:
    return problems
  allowed = evaluator_class(kind).OPTIONS
  unknown = sorted(set(entry) - {'type', 'every'} - set(allowed))
  if unknown:
    problems.append(f'config.evals.{name} has unknown option(s) {unknown} for type {kind!r}; '
                    f'allowed: {", ".join(allowed)}')
  return problems


def build_evaluators(config: ml_collections.ConfigDict, model: Any) -> list[Evaluator]:
  """The evaluators of `config.evals` for `model` (None: only their `data()` is asked)."""
  return [evaluator_class(entry.type)(config=config, model=model, name=name, options=entry)
          for name, entry in config.evals.items()]
