"""`python -m mixer_flax.main --config=... --dry_run`: the resolved config and the run's plan.

Every key with its value and its meaning (the comments of `config.base_config`, read from
its source by `config.key_comments`; evaluator options: the comments of their class's
`OPTIONS`), `*` marking the keys the command line changed; then what the run would do:
model, data, steps and epochs, devices and the per-device batch, checkpoints, evaluators and
the state of the workdir. The checks are the run's own (`preflight.check`: the config, every
split any evaluator reads); nothing is compiled or written, and a remote pretrained
checkpoint is not fetched.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from mixer_flax import config as config_lib
from mixer_flax import fileio, models, preflight
from mixer_flax.eval import build_evaluators, evaluator_class
from mixer_flax.training import results
from mixer_flax.training import workdir as workdir_lib


def describe(config: ml_collections.ConfigDict, *, workdir: str | None = None,
             file_config: ml_collections.ConfigDict | None = None) -> str:
  """The text `--dry_run` prints (raises what a run would raise before compiling)."""
  checked = preflight.check(config, file_config=file_config, open_pretrained=False)
  return '\n'.join(checked.warnings + config_lines(checked.config, file_config) + ['']
                   + plan_lines(checked, workdir))


def _meaning(key: str, config: ml_collections.ConfigDict, comments: dict[str, str]) -> str:
  if key in comments:
    return comments[key]
  parts = key.split('.')
  if parts[0] == 'evals' and len(parts) == 3 and parts[1] in config.evals:
    if parts[2] in ('type', 'every'):
      return comments.get(f'evals.eval.{parts[2]}', '')
    kind = config.evals[parts[1]].get('type', None)
    return config_lib.option_comments(evaluator_class(kind)).get(parts[2], '') if kind else ''
  return ''


def config_lines(config: ml_collections.ConfigDict,
                 file_config: ml_collections.ConfigDict | None) -> list[str]:
  """'key = value  # meaning' for every key ('*': set on the command line)."""
  comments = config_lib.key_comments()
  order = {key: i for i, key in enumerate(comments)}  # base_config's order, then the rest
  before = config_lib.dotted_leaves(file_config.to_dict()) if file_config is not None else {}
  if before.get('num_classes', 0) is None:  # resolved from the dataset, not overridden
    before['num_classes'] = config.num_classes
  lines = ['config (* = changed on the command line):']
  leaves = sorted(config_lib.dotted_leaves(config.to_dict()).items(),
                  key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
  for key, value in leaves:
    mark = '*' if before and before.get(key, None) != value else ' '
    meaning = _meaning(key, config, comments)
    lines.append(f' {mark}{key:<26} = {value!r:<24}' + (f'  # {meaning}' if meaning else ''))
  return lines


def _runs(total: int, every: int) -> int:
  """Runs every `every` steps and once at the end."""
  return total // every + (1 if total % every else 0)


def _parameters(config: ml_collections.ConfigDict) -> int:
  """Parameter count from shapes alone (traced, not compiled)."""
  from mixer_flax import train  # pylint: disable=g-import-not-at-top  (train imports us not)

  model = train.build_model(config, config.num_classes)
  shape = (1, config.image_size, config.image_size, 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros(shape, np.float32)))
  return models.num_params(shapes['params'])


def _workdir_state(workdir: str | None, total_steps: int) -> str:
  if not workdir:
    return '(no --workdir given)'
  if not fileio.is_local(workdir):
    return f'{workdir} (remote: its state is read when the run starts)'
  if not os.path.isdir(workdir):
    return f'{workdir}: new'
  done = results.read(workdir)
  if done.get('step') == total_steps and not done.get('preempted'):
    return (f'{workdir}: finished at step {total_steps}; a rerun runs only the evaluations '
            'result.json lacks')
  if (step := workdir_lib.newest_checkpoint_step(workdir)) is not None:
    return f'{workdir}: resumes from the checkpoint of step {step}'
  return f'{workdir}: exists, no checkpoint yet (starts at step 0)'


def plan_lines(checked: preflight.Checked, workdir: str | None) -> list[str]:
  """What the run would do."""
  c, info = checked.config, checked.info
  total, accum = c.total_steps, c.get('accum_steps', 1)
  processes, local = jax.process_count(), jax.local_device_count()
  per_device = c.batch // (processes * local)
  lines = ['plan:',
           f'  model        {c.model_name} at {c.image_size} px, {c.num_classes} classes, '
           f'{_parameters(c):,} parameters ({c.model.dtype})',
           f'  data         {c.dataset}: train {c.train_split!r} ({info.num_train_examples:,} '
           f'examples), eval {c.eval_split!r} ({info.num_eval_examples:,})',
           f'  steps        {total:,} of batch {c.batch} = '
           f'{total * c.batch / max(info.num_train_examples, 1):.1f} epochs; {c.optimizer}, '
           f'lr {c.base_lr} after {c.warmup_steps} warm-up steps, {c.decay_type} decay to '
           f'{c.end_lr}',
           f'  devices      {processes} process(es) x {local} {jax.default_backend()} device(s): '
           f'{per_device} examples per device per step'
           + (f' in {accum} microbatches of {per_device // accum}' if accum > 1 else ''),
           f'  checkpoints  every {c.checkpoint_every} steps and at the end '
           f'({_runs(total, c.checkpoint_every)} in all, the newest {c.keep_checkpoints} kept); '
           'final.npz + final.json (classes, preprocessing) before the final evaluations']
  for evaluator in build_evaluators(c, model=None):
    data = ', '.join(f'{d}[{s}]' for d, s in evaluator.data())
    runs = _runs(total, evaluator.every)
    lines.append(f'  evaluator    {evaluator.name} ({c.evals[evaluator.name].type}) every '
                 f'{evaluator.every} steps and at the end ({runs} run{"s" * (runs != 1)}): '
                 f'{data}')
  if not c.evals:
    lines.append('  evaluator    none (config.evals is empty)')
  path = c.pretrained_path
  lines.append(f'  pretrained   {path} (trained at {c.pretrained_image_size} px'
               + ('; remote: fetched when the run starts)' if path and not fileio.is_local(path)
                  else ')') if path else '  pretrained   none (from scratch)')
  lines.append(f'  workdir      {_workdir_state(workdir, total)}')
  return lines
