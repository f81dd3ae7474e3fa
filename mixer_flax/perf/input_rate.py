r"""Input pipeline throughput (images/s) versus what a training step consumes.

Measures, for one experiment config (default: experiments/digits.py):
  1. the train iterator alone (numpy batches, no device prefetch),
  2. the eval iterator alone (one pass),
  3. unless --no-step, the pmapped train step on a fixed batch (what the
     trainer consumes), and the ratio pipeline / step.

Command line: `scripts/benchmark_input.py`.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import ml_collections

from mixer_flax import config as config_lib


def images_per_second(iterator, *, batches: int, per_batch: int) -> float:
  """Steady-state rate after one warm-up batch."""
  next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * per_batch / (time.perf_counter() - start)


def step_images_per_second(config: ml_collections.ConfigDict, batch: dict, *,
                           steps: int) -> float:
  """Train steps/s x batch on a fixed device batch (the trainer's consumption)."""
  from mixer_flax import devices, models
  from mixer_flax.data import pipeline
  from mixer_flax.training import step as step_lib

  info = pipeline.get_dataset_info(config)
  overrides = {k: v for k, v in config.get('model', {}).items() if v is not None}
  model = models.create_model(config.model_name, num_classes=info.num_classes, **overrides)
  state = devices.replicate(step_lib.create_train_state(
      config=config, model=model, rng=jax.random.key(0), image_size=config.image_size))
  step = step_lib.make_train_step(config=config, model=model)
  rng = jax.random.key_data(jax.random.key(1))
  batch = next(devices.prefetch_to_device(iter([batch]), 1))
  state, metrics = step(state, batch, rng)  # Compile.
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  return steps * config.batch / (time.perf_counter() - start)


def _set(config: ml_collections.ConfigDict, assignment: str) -> None:
  key, value = assignment.split('=', 1)
  *parents, leaf = key.split('.')
  node = config
  for p in parents:
    node = node[p]
  old = node.get(leaf)
  node[leaf] = type(old)(value) if old is not None and not isinstance(old, bool) else (
      value.lower() in ('1', 'true') if isinstance(old, bool) else value)


def main(argv: list[str] | None = None) -> None:
  """`scripts/benchmark_input.py`: parses flags, prints the three rates."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='experiments/digits.py', help='experiment file[:arg]')
  parser.add_argument('--batches', type=int, default=50)
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--tf_threads', type=int, default=None)
  parser.add_argument('--set', action='append', default=[], help='key=value override')
  parser.add_argument('--no-step', dest='step', action='store_false')
  args = parser.parse_args(argv)

  config = config_lib.load_experiment(args.config)
  config.prefetch = 0
  if args.data_dir:
    config.data_dir = args.data_dir
  if args.tf_threads is not None:
    config.tf_threads = args.tf_threads
  for assignment in args.set:
    _set(config, assignment)

  from mixer_flax.data import pipeline, sources

  threads = sources.tf_options(config.get('tf_threads', 0)).threading
  print(f'dataset={config.dataset} image_size={config.image_size} batch={config.batch} '
        f'pp={dict(config.pp)} tf threads={threads.private_threadpool_size} '
        f'cpus={os.cpu_count()}')
  train = pipeline.get_train_iterator(config, seed=0)
  train_rate = images_per_second(train, batches=args.batches, per_batch=config.batch)
  print(f'train pipeline: {train_rate:,.0f} images/s')
  evals = list(pipeline.get_eval_iterator(config))
  start = time.perf_counter()
  n = sum(1 for _ in pipeline.get_eval_iterator(config))
  eval_rate = n * evals[0]['mask'].size / (time.perf_counter() - start)
  print(f'eval pipeline:  {eval_rate:,.0f} images/s (one pass incl. start-up, {n} batches)')
  if args.step:
    step_rate = step_images_per_second(config, next(train), steps=max(5, args.batches // 2))
    print(f'train step ({config.model_name}): {step_rate:,.0f} images/s; '
          f'pipeline / step = {train_rate / step_rate:.1f}x')


if __name__ == '__main__':
  main()
