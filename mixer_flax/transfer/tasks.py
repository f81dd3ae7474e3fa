"""The tasks of a suite as `suite.SuiteTask`s for one pre-trained checkpoint.

The names and datasets of the tasks need nothing heavy (`--check` answers in seconds); the
trainer, tfds and the checkpoint code are imported when tasks are built.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import ml_collections

from mixer_flax import config as config_lib
from mixer_flax.transfer import avg5, vtab

if TYPE_CHECKING:
  from mixer_flax.transfer import suite

# The recipe's dataset argument when only optimizer/schedule keys are used (VTAB).
_RECIPE_DATASET = 'cifar10'


def names(suite_name: str) -> list[str]:
  """All task names of a suite, in table order."""
  return list(vtab.TASKS) if suite_name == 'vtab1k' else list(avg5.AVG5_TASKS)


def datasets(suite_name: str, task_names: Sequence[str]) -> list[str]:
  """The tfds datasets (with version pattern) the tasks read."""
  if suite_name == 'vtab1k':
    return [vtab.TASKS[n].tfds_name for n in task_names]
  return list(task_names)


def unknown_tasks_message(requested: Sequence[str], known: Sequence[str], suite: str) -> str | None:
  """Names every unknown task at once; None if all are known."""
  unknown = [t for t in requested if t not in known]
  if not unknown:
    return None
  return (f'Unknown {suite} task(s): {", ".join(unknown)}. Known tasks: {", ".join(known)}.')


def finetune_config(arg: str) -> ml_collections.ConfigDict:
  """experiments/finetune.py's config for `arg` (the fine-tuning recipe's one owner)."""
  return config_lib.load_experiment(f'experiments/finetune.py:{arg}')


@functools.lru_cache(maxsize=4)
def checkpoint_architecture(path: str) -> tuple[str, int]:
  """(model name, pre-training resolution) read off a checkpoint's shapes."""
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import info  # pylint: disable=g-import-not-at-top
  arch = info.infer_architecture(checkpoint.load_npz(path))
  return arch['model_name'], int(arch['image_size'])


def split_counts(tfds_name: str, data_dir: str | None) -> dict[str, int]:
  """Examples per split of a prepared tfds dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  info = tfds.builder(tfds_name, data_dir=data_dir).info
  return {name: split.num_examples for name, split in info.splits.items()}


def build(suite_name: str, task_names: Sequence[str], *, pretrained: str,
          data_dir: str | None, resolutions: tuple[int, int] = vtab.RESOLUTIONS,
          image_size: int = 224) -> list[suite.SuiteTask]:
  """SuiteTasks fine-tuning `pretrained` (its model read off the checkpoint).

  Args:
    suite_name: 'vtab1k' or 'avg5'.
    task_names: subset of `names(suite_name)`.
    pretrained: the checkpoint.
    data_dir: tfds data_dir.
    resolutions: VTAB (small-image, large-image) fine-tuning sizes.
    image_size: Avg-5 fine-tuning size.
  """
  from mixer_flax.transfer import suite  # pylint: disable=g-import-not-at-top,redefined-outer-name
  model_name, pretrained_size = checkpoint_architecture(pretrained)

  def recipe(arg: str) -> ml_collections.ConfigDict:
    c = finetune_config(arg)
    c.pretrained_path = pretrained
    c.pretrained_image_size = pretrained_size
    c.data_dir = data_dir
    return c

  if suite_name == 'avg5':
    return [suite.SuiteTask(
        name=d, label=avg5.AVG5_TASKS[d], group='avg5', dataset=d,
        make_config=functools.partial(_avg5_config, d, recipe, model_name, image_size))
        for d in task_names]
  return vtab_tasks(task_names, recipe=recipe(f'{model_name},{_RECIPE_DATASET}'),
                    data_dir=data_dir, resolutions=resolutions)


def vtab_tasks(task_names: Sequence[str], *, recipe: ml_collections.ConfigDict,
               data_dir: str | None,
               resolutions: tuple[int, int] = vtab.RESOLUTIONS) -> list[suite.SuiteTask]:
  """VTAB SuiteTasks from a fine-tuning recipe (model, checkpoint, optimizer keys)."""
  from mixer_flax.transfer import suite  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return [suite.SuiteTask(
      name=t.name, label=t.label, group=t.group, dataset=t.tfds_name,
      make_config=functools.partial(_vtab_config, t, recipe, data_dir, resolutions))
      for t in (vtab.TASKS[n] for n in task_names)]


def _vtab_config(task: vtab.Task, base: ml_collections.ConfigDict, data_dir: str | None,
                 resolutions: tuple[int, int], stage: str,
                 lr: float) -> ml_collections.ConfigDict:
  return vtab.task_config(task, recipe=base, counts=split_counts(task.tfds_name, data_dir),
                          stage=stage, base_lr=lr,
                          image_size=vtab.image_size_for(task, resolutions))


def _avg5_config(dataset: str, recipe, model_name: str, image_size: int, stage: str,
                 lr: float) -> ml_collections.ConfigDict:
  arg = avg5.finetune_arg(dataset, model_name=model_name, image_size=image_size, stage=stage)
  c = recipe(arg)
  c.base_lr = lr
  return c
