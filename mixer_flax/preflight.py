"""What a run needs, checked before anything is compiled or written; every problem at once.

The config (`validate.validate`), the train and eval splits (`pipeline.check_splits`), every
(dataset, split) any evaluator reads (`Evaluator.data()`) and the pretrained checkpoint
(reachable). `train.train_and_evaluate` and `--dry_run` (`dry_run.py`) start here, so a
few-shot evaluator naming a dataset that is not prepared stops the run before step 1, not
after the last one.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from mixer_flax import validate
from mixer_flax.checkpoint import npz
from mixer_flax.data import pipeline
from mixer_flax.eval import build_evaluators, inputs


@dataclasses.dataclass
class Checked:
  """A config that passed: a private copy with `num_classes` filled in, and what was found."""

  config: ml_collections.ConfigDict
  info: pipeline.DatasetInfo
  warnings: list[str]


def check(config: ml_collections.ConfigDict, *,
          file_config: ml_collections.ConfigDict | None = None,
          open_pretrained: bool = True) -> Checked:
  """Checks `config` and the data and checkpoint it names.

  Args:
    config: the run config (not changed).
    file_config: the config before command-line overrides (`validate.override_problems`).
    open_pretrained: also read the first byte of `config.pretrained_path` (a remote one is
      then reached over the network; `--dry_run` does not).

  Returns:
    `Checked`.

  Raises:
    ValueError, OSError: the one problem found; several: ValueError listing them all.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked private copy
  validate.validate(config)
  problems: list[tuple[str, Exception]] = []  # (what was being checked, error)
  warnings: list[str] = []
  info = None
  try:
    info = pipeline.get_dataset_info(config)  # names config.dataset when unknown/unprepared
  except (OSError, ValueError) as e:
    problems.append(('', e))
  if file_config is not None:  # keys the file set for the dataset the command line replaced
    overridden = validate.override_problems(
        config, file_config, dataset_classes=len(info.label_names) if info else None)
    if overridden:
      problems.append(('', ValueError('Invalid config: ' + '; '.join(overridden) + '.')))
  if info is not None and not problems:
    config.num_classes = int(config.num_classes or info.num_classes)
    try:
      warnings += pipeline.check_splits(config)  # broken images fail here, not at step 1
    except (OSError, ValueError) as e:
      problems.append(('', e))
  named = len(info.label_names) if info is not None else 0
  if named and config.num_classes and config.num_classes > named:
    warnings.append(f'Warning: config.num_classes={config.num_classes} but {config.dataset} has '
                    f'{named} classes: {config.num_classes - named} outputs of the head are '
                    f'never trained (--config.num_classes={named} fits the dataset).')
  problems += _evaluator_problems(config)
  if config.pretrained_path and open_pretrained:
    try:
      npz.check_readable(config.pretrained_path)
    except (OSError, ValueError) as e:
      problems.append(('config.pretrained_path', e))
  if problems:
    raise _combined(problems)
  return Checked(config=config, info=info, warnings=warnings)


def _evaluator_problems(config: ml_collections.ConfigDict) -> list[tuple[str, Exception]]:
  """Opens every (dataset, split) of every evaluator that the train/eval check did not."""
  seen = {(config.dataset, split, config.data_dir)
          for split in (config.train_split, config.eval_split)}
  problems = []
  for evaluator in build_evaluators(config, model=None):
    data_dir = config.evals[evaluator.name].get('data_dir', None) or config.data_dir
    for dataset, split in evaluator.data():
      if (dataset, split, data_dir) in seen:
        continue
      seen.add((dataset, split, data_dir))
      try:
        pipeline.check_split(inputs.eval_config(config, dataset=dataset, data_dir=data_dir),
                             split)
      except (OSError, ValueError) as e:
        if str(e) not in {str(error) for _, error in problems}:  # e.g. once per unprepared dataset
          problems.append((f'config.evals.{evaluator.name} reads {dataset}[{split}]', e))
  return problems


def _combined(problems: list[tuple[str, Exception]]) -> Exception:
  """The one error (its type kept), or a ValueError listing several."""
  texts = [f'{what}: {error}' if what else str(error) for what, error in problems]
  if len(problems) == 1:
    what, error = problems[0]
    if not what:
      return error
    try:
      named = type(error)(texts[0])
    except TypeError:  # an exception class with another constructor
      named = ValueError(texts[0])
    named.__cause__ = error
    return named
  return ValueError(f'{len(problems)} problems before training: '
                    + ' '.join(f'({i}) {t}' for i, t in enumerate(texts, 1)))
