"""Trainer vs bare train step on the same config: how much the input pipeline and loop cost.

Only this part of the benchmark imports TensorFlow (through the trainer), lazily.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import jax
import numpy as np

from mixer_flax import config as config_lib


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
  """Trainer img/s (real input pipeline) vs the bare pmapped step on a device-resident batch.

  Both rates are medians over the trainer's logging intervals (`progress_every`
  steps, metrics fetched at each interval end, as the trainer does), the first
  interval of each phase (compilation) excluded. The bare step runs before and after the
  trainer (half the steps each), so a load that drifts during the run biases neither side.
  """
  import tempfile

  from mixer_flax import devices, train
  from mixer_flax.data import pipeline
  from mixer_flax.training import metrics
  from mixer_flax.training import step as step_lib

  config = config_lib.load_experiment(args.config)
  config.total_steps = args.steps
  config.progress_every = max(args.steps // 10, 5)
  config.evals = {'eval': dict(type='classification', every=args.steps)}
  config.checkpoint_every = args.steps  # eval/checkpoint only at the end
  config.warmup_steps = min(config.warmup_steps, args.steps)
  if args.data_dir:
    config.data_dir = args.data_dir
  num_classes = pipeline.get_dataset_info(config).num_classes
  config.num_classes = num_classes
  model = train.build_model(config, num_classes)
  state = devices.replicate(train.initial_state(config, model, jax.random.key(0)))
  step = step_lib.make_train_step(config=config, model=model)
  batch = next(pipeline.get_train_iterator(config, seed=0))
  batch = devices.replicate({k: np.asarray(v)[0] for k, v in batch.items()})
  rng = devices.replicate(jax.random.key_data(jax.random.key(1)))
  every = config.progress_every

  def bare_phase(state):
    rates = []
    for i in range(max(2, args.steps // every // 2)):
      t = time.perf_counter()
      for _ in range(every):
        state, m = step(state, batch, rng)
      jax.device_get(m)
      if i:
        rates.append(every * config.batch / (time.perf_counter() - t))
    return state, rates

  state, before = bare_phase(state)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    result = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t0
    records = metrics.read_metrics(workdir)
  trainer_rates = [r['img/s'] for r in records if 'img/s' in r][1:]
  state, after = bare_phase(state)
  bare_rates = before + after
  trainer, bare = statistics.median(trainer_rates), statistics.median(bare_rates)
  overrides = {k: v for k, v in config.model.to_dict().items()
               if v is not None and k in ('patch_size', 'hidden_dim', 'num_blocks',
                                          'tokens_mlp_dim', 'channels_mlp_dim')}
  return {'config': args.config, 'model_name': config.model_name, 'batch': config.batch,
          'dtype': str(config.model.get('dtype', 'float32')), 'num_classes': num_classes,
          'model_overrides': overrides,
          'image_size': config.image_size, 'steps': args.steps,
          'trainer_img_per_s': trainer, 'trainer_img_per_s_runs': trainer_rates,
          'bare_img_per_s': bare, 'bare_img_per_s_runs': bare_rates, 'ratio': trainer / bare,
          'bare_before_img_per_s': statistics.median(before),
          'bare_after_img_per_s': statistics.median(after),
          'trainer_wall_s': wall, 'eval_accuracy': result.get('eval_accuracy')}
