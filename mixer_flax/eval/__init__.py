"""Evaluators: what the trainer runs on the parameters every few steps (big_vision's `evals`).

An evaluator has a `name`, runs every `every` steps (and at the end of training) and maps
parameters (replicated over the local devices, or not) to named metrics:

    evaluator.run(params) -> {metric name: value}

`config.evals` lists them, one entry per evaluator: `type` (`config.EVALUATOR_TYPES`),
`every` and the evaluator's own options, e.g.

    config.evals = dict(eval=dict(type='classification', every=1000),
                        fewshot=dict(type='fewshot', every=10_000, datasets=('cifar10',)))

Without `config.evals` the older keys describe them (`config.evals`): a classification evaluator
'eval' every `config.eval_every` steps, and 'fewshot' when `config.fewshot` is set. Metric
names are `<name>_accuracy`, `<name>_top5_accuracy`, `<name>_loss`, `<name>_count`
(classification: `eval_accuracy`, ...) and `<name>/<dataset>_<k>shot` (few-shot).
"""

from __future__ import annotations

from typing import Any, Protocol

import ml_collections

from mixer_flax import config as config_lib
from mixer_flax.eval import classification, fewshot


class Evaluator(Protocol):
  """Runs on the parameters every `every` steps and returns named metrics."""

  name: str
  every: int

  def run(self, params: Any) -> dict[str, float]:
    """Metrics of `params` (replicated over the local devices, or not)."""


def build_evaluators(config: ml_collections.ConfigDict, model: Any) -> list[Evaluator]:
  """The evaluators of `config` (see `config.evals`) for `model`."""
  makers = {'classification': classification.ClassificationEvaluator,
            'fewshot': fewshot.FewShotEvaluator}
  return [makers[entry.type](config=config, model=model, name=name, options=entry)
          for name, entry in config_lib.evals(config).items()]
