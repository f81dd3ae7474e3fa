"""Which config changes a resumed run may make (`RESUMABLE_KEYS`), and the differences found.

Why these keys may change on resume:

* `total_steps`: extends or shortens a run. The learning-rate schedule is a function of it,
  so the decay is stretched to the new end from the resumed step on (logged);
* `evals` (every evaluator and its options), `checkpoint_every`, `progress_every`,
  `keep_checkpoints`: what is measured and when, not what a training step computes;
* `data_dir`, `manual_dir`, `folder_root`, `pretrained_path`: where files are (a dataset moved
  to another disk). `pretrained_path` is only read at step 0; a resumed run restores the
  checkpoint. The comparison cannot tell a moved dataset from another one: that is on you;
* `prefetch`, `tf_threads`: throughput only;
* `batch_eval`: the eval is exact (padded + masked), its numbers do not depend on it.

Everything else (model, optimizer, lr, batch, seed, augmentation, splits, ...) changes what a
step computes, so a resumed run would be an unflagged mix of two experiments.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import ml_collections

from mixer_flax import config as config_lib

# Flattened config keys (fnmatch patterns) that may change on resume.
RESUMABLE_KEYS = ('total_steps', 'evals', 'evals.*', 'checkpoint_every', 'progress_every',
                  'keep_checkpoints', 'data_dir', 'manual_dir', 'folder_root',
                  'pretrained_path', 'prefetch', 'tf_threads', 'batch_eval')
_ABSENT = '(absent)'


def config_changes(saved: dict[str, Any],
                   new: dict[str, Any]) -> tuple[list[str], list[str]]:
  """Differences `key: old -> new` between two config dicts: (resumable, refused), sorted.

  A key the saved config lacks and the new one has at its `base_config()` default (a key
  added by a later version) is no change; keys of earlier versions that only chose when to
  evaluate or how to run an op (`config.REPLACED_KEYS`) may change.
  """
  old_flat, new_flat = config_lib.dotted_leaves(saved), config_lib.dotted_leaves(new)
  defaults = config_lib.dotted_leaves(as_json(config_lib.base_config()))
  replaced = tuple(config_lib.REPLACED_KEYS)
  resumable, refused = [], []
  for key in sorted(set(old_flat) | set(new_flat)):
    old, value = old_flat.get(key, _ABSENT), new_flat.get(key, _ABSENT)
    if old is _ABSENT and key in defaults and value == defaults[key]:
      continue
    if old != value:
      line = f'{key}: {json.dumps(old) if old is not _ABSENT else old} -> ' \
             f'{json.dumps(value) if value is not _ABSENT else value}'
      resumable_key = (any(fnmatch.fnmatchcase(key, p) for p in RESUMABLE_KEYS)
                       or key.startswith(replaced))
      (resumable if resumable_key else refused).append(line)
  return resumable, refused


def as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as `config.json` stores it (tuples as lists, ...)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))
