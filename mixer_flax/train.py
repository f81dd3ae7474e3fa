"""The training loop: validate, initialise or resume, train with pmap, evaluate, checkpoint.

`train_and_evaluate(config, workdir)` runs one experiment (pre-training or fine-tuning)
described by an `experiments/*.py` config (keys: `config.base_config`):

* the config is validated before anything is compiled (batch divisibility, dataset,
  model name, pretrained file), and saved resolved to `workdir/config.json`;
* the model starts from scratch or from an `.npz` (`checkpoint.load_pretrained`: head
  replaced, higher resolution adapted) and is replicated on the local devices;
* if `workdir/checkpoints` holds a checkpoint the run resumes from it: the input pipeline
  restarts at the next batch and the per-step RNG is a function of the step, so a resumed
  run is identical to an uninterrupted one (the saved step never runs twice);
* the evaluators of `config.evals` (`mixer_flax/eval`: by default top-1, top-5 and loss on
  the exact padded+masked eval split every `eval_every` steps, and linear few-shot probes
  every `config.fewshot.every` steps when `config.fewshot` is set) run every `every` steps of
  theirs and at the end;
* checkpoints every `checkpoint_every` steps, at the end, and on SIGTERM (then the
  function returns with `preempted=True`); a state is checkpointed only after its loss
  and parameters were checked finite, so a NaN/Inf loss raises `NonFiniteLossError` and
  leaves the last good checkpoint intact;
* metrics go to clu writers, `workdir/metrics.jsonl` and the console (`metrics.py`);
  the final parameters are exported as an official-layout `workdir/final.npz`.

Host syncs happen only at progress/eval/checkpoint boundaries: the step loop only
dispatches work (state donated, inputs prefetched to the devices).
"""

from __future__ import annotations

import json
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from mixer_flax import checkpoint, devices, fileio, models
from mixer_flax import config as config_lib
from mixer_flax.data import pipeline
from mixer_flax.eval import Evaluator, build_evaluators
from mixer_flax.training import runtime
from mixer_flax.training import step as step_lib
from mixer_flax.training.metrics import MetricsLogger, format_duration


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf."""


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The Mixer of `config` with a `num_classes` head (higher-resolution fine-tuning aware)."""
  overrides = {k: v for k, v in config.model.to_dict().items() if v is not None}
  if config.get('pretrained_path'):
    pretrained_size = config.get('pretrained_image_size', 224)
    if config.image_size != pretrained_size:
      overrides.update(checkpoint.finetune_overrides(
          model_name=config.model_name, image_size=config.image_size,
          pretrained_image_size=pretrained_size))
  return models.create_model(config.model_name, num_classes=num_classes, **overrides)


def initial_state(config: ml_collections.ConfigDict, model, rng: jax.Array):
  """Unreplicated train state: from scratch, or with `config.pretrained_path` loaded."""
  state = step_lib.create_train_state(config=config, model=model, rng=rng,
                                      image_size=config.image_size)
  if config.get('pretrained_path'):
    params = checkpoint.load_pretrained(path=config.pretrained_path,
                                        init_params=jax.device_get(state.params))
    state = step_lib.create_train_state(config=config, model=model, rng=rng,
                                        image_size=config.image_size, params=params)
  return state


def run_evaluators(evaluators: list[Evaluator], params, step: int | None = None
                   ) -> dict[str, float]:
  """Metrics of the evaluators due at `step` (all of them when `step` is None)."""
  metrics = {}
  for evaluator in evaluators:
    if step is None or step % evaluator.every == 0:
      metrics.update(evaluator.run(params))
  return metrics


def _scalar(x) -> float:
  """First element of a fetched (possibly replicated) metric."""
  return float(np.asarray(x).reshape(-1)[0])


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  with fileio.open_file(fileio.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains and evaluates `config`, writing everything under `workdir`.

  Returns:
    Final metrics: `step`, `train_loss`, `eval_accuracy`, `eval_top5_accuracy`,
    `eval_loss` (and few-shot accuracies), `wall_time_s`, `preempted`, `resumed_from`,
    `process_index` and `params_digest` (sha256 of the final params: equal on all processes).
  """
  t_start = time.perf_counter()
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked private copy
  config_lib.validate(config)
  info = pipeline.get_dataset_info(config)  # ValueError naming config.dataset
  config.num_classes = int(config.get('num_classes') or info.num_classes)
  is_main = jax.process_index() == 0
  if is_main:
    fileio.makedirs(workdir)
    _write_config(config, workdir)

  model = build_model(config, config.num_classes)
  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  state_host = initial_state(config, model, init_rng)
  ckpts = runtime.Checkpoints(workdir, keep=config.get('keep_checkpoints', 2))
  start_step = ckpts.latest_step() or 0
  if start_step:
    state_host = ckpts.restore(start_step, jax.device_get(state_host))
  state = devices.replicate(state_host)
  del state_host
  log = MetricsLogger(workdir=workdir, total_steps=config.total_steps, write_files=is_main,
                      resume_step=start_step)
  if start_step:
    log.message(f'Resuming from the checkpoint of step {start_step} in {ckpts.directory}.')

  p_train_step = step_lib.make_train_step(config=config, model=model)
  evaluators = build_evaluators(config, model)
  # Batches come already placed on the devices (`config.prefetch` ahead).
  train_iter = pipeline.get_train_iterator(config, seed=config.seed, start_step=start_step)
  # One key for the run; the step folds in the step number, the device and the microbatch.
  train_rng = devices.replicate(jax.random.key_data(train_rng))

  result: dict[str, Any] = {'resumed_from': start_step, 'preempted': False}
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
    if not runtime.all_finite(state.params):
      raise NonFiniteLossError(f'Parameters became non-finite by step {step}; not saved. The '
                               f'last good checkpoint (step {ckpts.latest_step()}) is intact.')
    ckpts.save(step, devices.unreplicate(state))

  try:
    stop = False
    with runtime.PreemptionSignal() as preemption:
      for step in range(start_step + 1, config.total_steps + 1):
        batch = next(train_iter)
        state, metrics = p_train_step(state, batch, train_rng)
        pending.append((step, metrics))
        is_last = step == config.total_steps
        if step % config.progress_every == 0 or is_last:
          check_and_log(step)
          # Multi-host: all processes must stop at the same step, so they agree here.
          stop = runtime.any_process(preemption.received is not None)
        if jax.process_count() == 1:
          stop = preemption.received is not None
        t_eval = time.perf_counter()
        eval_metrics = run_evaluators(evaluators, state.params, None if is_last else step)
        if eval_metrics:
          log.skip_time(time.perf_counter() - t_eval)
          log.log(step, **eval_metrics)
          log.message(f'step {step}: ' + '  '.join(
              f'{k} {v:.4f}' for k, v in eval_metrics.items() if not k.endswith('_count')))
          result.update(eval_metrics)
        log.flush()
        if step % config.checkpoint_every == 0 or is_last:
          save(step)
        if stop and not is_last:
          save(step)
          ckpts.wait()
          log.message(f'Preemption signal received: saved the checkpoint of step '
                      f'{step}; exiting. Rerun the same command to resume.')
          result['preempted'] = True
          break
  except BaseException:
    ckpts.close()  # lets an in-flight save of a good state commit
    log.close()
    raise

  if start_step >= config.total_steps:  # nothing to train: evaluate the restored state
    result.update(run_evaluators(evaluators, state.params))
  ckpts.close()
  params = devices.unreplicate(state.params)
  result.update(step=step, process_index=jax.process_index(),
                params_digest=runtime.digest(params))
  if is_main and not result['preempted']:
    checkpoint.save_npz(fileio.join(workdir, 'final.npz'), params)
  result['wall_time_s'] = time.perf_counter() - t_start
  if is_main:
    with fileio.open_file(fileio.join(workdir, 'result.json'), 'w') as f:
      json.dump({k: v for k, v in result.items()}, f, indent=2)
  log.message(f'Done at step {step} in {format_duration(result["wall_time_s"])}.')
  log.close()
  return result
