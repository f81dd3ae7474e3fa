"""The training loop: `train_and_evaluate(config, workdir)` runs one experiment.

Check the config, the data of every evaluator and the pretrained checkpoint (`preflight.py`),
lock the workdir, initialise (or load `pretrained_path`), resume from the newest good
checkpoint, then train with the pmapped step; the evaluators of `config.evals` run on their
schedule and at the end; checkpoints every `checkpoint_every` steps, at the end and on SIGTERM /
Ctrl-C. The final state is saved (checkpoint, `final.npz` + `final.json`) before the final
evaluations run, so a failing evaluator loses no training: rerunning the command runs only the
evaluations `result.json` lacks. The step loop only dispatches work: the host syncs at
progress, eval and checkpoint boundaries. A resumed run is identical to an uninterrupted one
(batches and keys are functions of (seed, step)).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from mixer_flax import checkpoint, devices, fileio, preflight
from mixer_flax.checkpoint import metadata
from mixer_flax.data import pipeline
from mixer_flax.eval import Evaluator, build_evaluators
from mixer_flax.training import checkpoints, results, resume
from mixer_flax.training import preemption as preemption_lib
from mixer_flax.training import step as step_lib
from mixer_flax.training import workdir as workdir_lib
from mixer_flax.training.metrics import MetricsLogger
from mixer_flax.training.preemption import PreemptionSignal
from mixer_flax.training.start import build_model, initial_state


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf."""


def run_evaluators(evaluators: list[Evaluator], params) -> dict[str, float]:
  """The metrics of every evaluator in `evaluators` (the caller picks those due)."""
  metrics = {}
  for evaluator in evaluators:
    metrics.update(evaluator.run(params))
  return metrics


def _scalar(x) -> float:
  """First element of a fetched (possibly replicated) metric."""
  return float(np.asarray(x).reshape(-1)[0])


def _say(text: str) -> None:
  if jax.process_index() == 0:
    print(text, flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       allow_config_change: bool = False,
                       file_config: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
  """Trains and evaluates `config`, writing everything under `workdir`.

  Args:
    config: the experiment config.
    workdir: output directory; a rerun with the same workdir resumes.
    allow_config_change: resume although the config differs from the workdir's saved one in
      keys that may not change on resume (`training/workdir.py`).
    file_config: the config before command-line overrides (`validate.override_problems`).

  Returns:
    Final metrics: `step`, `train_loss`, `eval_accuracy`, `eval_top5_accuracy`, `eval_loss`
    (and few-shot accuracies), `wall_time_s`, `preempted` (and `signal`), `resumed_from`,
    `started`, `process_index` and `params_digest` (sha256 of the final params, equal on all
    processes).

  Raises:
    ValueError, OSError: a problem found before training (`preflight.check`).
    workdir_lib.WorkdirError: locked workdir, config changed, no restorable checkpoint.
  """
  t_start = time.perf_counter()
  started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
  checked = preflight.check(config, file_config=file_config)
  for warning in checked.warnings:
    _say(warning)
  config = checked.config
  preemption_lib.set_exit_note('during start-up; nothing to save.')
  try:
    opened = workdir_lib.open_workdir(config, workdir, allow_config_change=allow_config_change,
                                      log=_say)
    try:
      return _train(config, workdir, t_start, opened,
                    classes=checked.info.label_names, started=started)
    finally:
      opened.release()
  except fileio.WriteError as e:  # any file of the run: the same advice
    if e.remedy == (remedy := checkpoints.remedy(config.keep_checkpoints)):
      raise
    raise e.with_remedy(remedy) from e


def _train(config: ml_collections.ConfigDict, workdir: str, t_start: float,
           opened: workdir_lib.OpenedWorkdir, *, classes, started: str) -> dict[str, Any]:
  """`train_and_evaluate` once the workdir is locked and holds the config."""
  is_main = jax.process_index() == 0
  model = build_model(config, config.num_classes)
  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  # Look before leaping: one checkpoint's bytes from the state's shapes (nothing allocated).
  shapes = jax.eval_shape(lambda r: step_lib.create_train_state(
      config=config, model=model, rng=r, image_size=config.image_size), init_rng)
  if is_main and (warning := checkpoints.space_warning(
      workdir, checkpoint_bytes=checkpoints.state_bytes(shapes), keep=config.keep_checkpoints)):
    _say(warning)
  state_host = initial_state(config, model, init_rng)
  ckpts = checkpoints.Checkpoints(workdir, keep=config.keep_checkpoints)
  start_step, state_host = resume.restore_latest(ckpts, jax.device_get(state_host), log=_say)
  opened.save_config()
  state = devices.replicate(state_host)
  del state_host
  log = MetricsLogger(workdir=workdir, total_steps=config.total_steps, write_files=is_main,
                      resume_step=start_step)
  previous = results.read(workdir, warn=log.message) if is_main else {}
  if start_step:
    log.message(f'Resuming from the checkpoint of step {start_step} in {ckpts.directory}.')

  p_train_step = step_lib.make_train_step(config=config, model=model)
  evaluators = build_evaluators(config, model)
  # Batches come already placed on the devices (`config.prefetch` ahead).
  train_iter = pipeline.get_train_iterator(config, seed=config.seed, start_step=start_step)
  # One key for the run; the step folds in the step number, the device and the microbatch.
  train_rng = devices.replicate(jax.random.key_data(train_rng))

  result: dict[str, Any] = {'started': started, 'resumed_from': start_step, 'preempted': False}
  pending: list[tuple[int, Any]] = []  # (step, device metrics) since the last check
  step = start_step
  log.start_timer(start_step)

  def check_and_log(step: int) -> None:
    nonlocal pending
    fetched = jax.device_get([m for _, m in pending])
    losses = np.array([_scalar(m['train_loss']) for m in fetched], np.float64)
    finite = np.array([_scalar(m.get('finite', 1.0)) > 0 for m in fetched]) & np.isfinite(losses)
    if not np.all(finite):
      first = int(np.argmin(finite))
      raise NonFiniteLossError(
          f'Training loss or gradient became non-finite (loss {losses[first]}) at step '
          f'{pending[first][0]}. The last good '
          f'checkpoint (step {ckpts.latest_step()}) in {ckpts.directory} is intact. Lower '
          f'config.base_lr (now {config.base_lr}), raise config.warmup_steps or set '
          f'config.grad_norm_clip.')
    sec_per_step, _ = log.interval_rate(step)
    last = fetched[-1]
    img_s = config.batch / sec_per_step
    metrics = {'train_loss': float(losses.mean()), 'img/s': img_s}
    if 'learning_rate' in last:
      metrics['learning_rate'] = _scalar(last['learning_rate'])
    log.log(step, **metrics)
    first = 'train_loss' not in result  # this interval includes compiling the step
    log.progress(step, loss=metrics['train_loss'], img_per_sec=img_s, sec_per_step=sec_per_step,
                 extra='  (includes compilation)' if first else '')
    result['train_loss'] = metrics['train_loss']
    pending = []

  def save(step: int) -> None:
    if pending:
      check_and_log(step)
    if not checkpoints.all_finite(state.params):
      raise NonFiniteLossError(f'Parameters became non-finite by step {step}; not saved. The '
                               f'last good checkpoint (step {ckpts.latest_step()}) is intact.')
    ckpts.save(step, devices.unreplicate(state))

  def evaluate(step: int, due: list[Evaluator], record: bool = True) -> None:
    t_eval = time.perf_counter()
    eval_metrics = run_evaluators(due, state.params)
    if eval_metrics:
      log.skip_time(time.perf_counter() - t_eval)
      if record:
        log.log(step, **eval_metrics)
      log.message(f'step {step}: ' + '  '.join(
          f'{k} {v:.4f}' for k, v in eval_metrics.items() if not k.endswith('_count')))
      result.update(eval_metrics)

  try:
    with PreemptionSignal() as preemption:
      for step in range(start_step + 1, config.total_steps + 1):
        batch = next(train_iter)
        state, metrics = p_train_step(state, batch, train_rng)
        pending.append((step, metrics))
        # A save that failed in the background stops the run (multi-host: all agree when).
        if ((jax.process_count() == 1 or step % config.progress_every == 0)
            and devices.any_process(ckpts.failed())):
          ckpts.raise_failure()
        is_last = step == config.total_steps
        stop = False
        if step % config.progress_every == 0 or is_last:
          check_and_log(step)
          # Multi-host: all processes must stop at the same step, so they agree here.
          stop = devices.any_process(preemption.received is not None)
        if jax.process_count() == 1:
          stop = preemption.received is not None
        stop = stop and not is_last
        if step % config.checkpoint_every == 0 or is_last or stop:
          save(step)  # before evaluating: a failing evaluator loses no training
        if is_last:
          break
        evaluate(step, [e for e in evaluators if step % e.every == 0])
        log.flush()
        if stop:
          result.update(preempted=True, signal=preemption.name)
          break
      ckpts.close()  # the last save commits before a signal may end the process
    params = devices.unreplicate(state.params)
    preemption_lib.set_exit_note(f'after the checkpoint of step {step} was saved; rerun the '
                                 'same command to finish.')
    if not result['preempted']:
      if is_main:  # final.npz before the final evaluations, with its classes and preprocessing
        path = fileio.join(workdir, 'final.npz')
        checkpoint.save_npz(path, params)
        metadata.save(path, metadata.for_config(config, classes))
      trained = start_step < config.total_steps
      done = {} if trained else results.final_metrics(previous, step)
      result.update(done)  # a rerun runs only the evaluations the finished run lacks
      evaluate(step, [e for e in evaluators if not results.has_metrics(done, e.name)],
               record=trained)  # metrics.jsonl already holds this step's record
  except BaseException as e:
    refused = ckpts.abort()  # lets an in-flight save of a good state commit
    log.abort()
    if refused is not None and not isinstance(e, fileio.WriteError):
      raise refused from e
    raise
  result.update(step=step, process_index=jax.process_index(),
                params_digest=checkpoints.digest(params))
  result['wall_time_s'] = time.perf_counter() - t_start
  if is_main:
    fileio.write_atomic(fileio.join(workdir, results.FILE),
                        json.dumps(results.with_leg(previous, result), indent=2), what='the result')
  log.message(results.end_line(result, workdir))
  log.close()
  return result
