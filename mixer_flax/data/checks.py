"""Checks, before anything is compiled, that the splits a run reads can be read."""

from __future__ import annotations

from mixer_flax.data.sources import Source


def check_splits(source: Source, *, train_split: str, eval_split: str, process_index: int,
                 process_count: int) -> list[str]:
  """Checks, before anything is compiled, the splits a run reads; returns warnings.

  Opens this process's share of both splits (image folders: every image must decode; each
  file is checked once per process). Where the labels are known (image folders), an eval
  class the train split lacks is refused (the model cannot learn it) and a train class
  the eval split lacks is a warning.

  Raises:
    ValueError naming the undecodable file or the classes.
  """
  for split in (train_split, eval_split):
    source.records(split, process_index, process_count)
  if source.labels is None:
    return []
  train, test = set(source.labels(train_split).tolist()), set(source.labels(eval_split).tolist())

  def names(labels: set[int]) -> str:
    return ', '.join(str(source.label_names[i]) for i in sorted(labels))

  if test - train:
    raise ValueError(
        f'config.eval_split={eval_split!r} of {source.name} has images of classes that '
        f'config.train_split={train_split!r} lacks: {names(test - train)}. The model cannot '
        'learn them: add training images of these classes or remove them from the eval split.')
  if train - test:
    return [f'Warning: config.eval_split={eval_split!r} of {source.name} has no images of the '
            f'classes {names(train - test)}; they are trained but never evaluated.']
  return []
