r"""The trainer's loop without its input pipeline, against the bare step (no TensorFlow).

`scripts/benchmark_loop.py`. What the trainer (`train._train`) does per step apart from
producing batches: take the next batch from `devices.prefetch_to_device` (`config.prefetch`
batches ahead, the host -> device copy), call the pmapped step with the paper's device
augmentation, keep the metrics, and fetch them every `--every` steps (the logging interval).
Here the batches come from a ring of `--distinct` random uint8 host batches already in memory,
so what is timed is that loop; the bare step runs on one device-resident batch with the same
interval fetches. Phases alternate (loop, bare, bare, loop, ...); rates are medians over the
intervals, the first of each phase excluded. Where TensorFlow is available, `scripts/
benchmark.py --end_to_end` times the whole trainer with its real input pipeline instead.

  python scripts/benchmark_loop.py --variant Mixer-B_16 --batch 512 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from typing import Any

import jax
import numpy as np

from mixer_flax import config as config_lib
from mixer_flax import devices
from mixer_flax.training import start
from mixer_flax.training import step as step_lib


def _config(args: argparse.Namespace) -> Any:
  config = config_lib.load_experiment(args.config)
  config.model_name = args.variant or config.model_name
  config.batch, config.num_classes = args.batch, args.num_classes
  config.image_size = args.image_size or config.image_size
  config.model.dtype = args.dtype
  return config


def _intervals(step, state, batches, *, rng, every: int, count: int, batch: int
               ) -> tuple[Any, list[float]]:
  """Runs count + 1 intervals of `every` steps; img/s of all but the first."""
  rates = []
  for i in range(count + 1):
    start, pending = time.perf_counter(), []
    for _ in range(every):
      state, metrics = step(state, next(batches), rng)
      pending.append(metrics)
    jax.device_get(pending)  # the trainer's fetch at each logging interval
    if i:
      rates.append(every * batch / (time.perf_counter() - start))
  return state, rates


def loop_vs_bare(args: argparse.Namespace) -> dict[str, Any]:
  """Img/s of the trainer's loop (prefetch from host memory) and of the bare step."""
  config = _config(args)
  device = jax.devices()[0]
  model = start.build_model(config, config.num_classes)  # the trainer's model
  state = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                      image_size=config.image_size)
  state = jax.device_put(jax.tree_util.tree_map(lambda x: x[None], state), device)
  step = step_lib.make_train_step(config=config, model=model, devices=[device])
  rng = jax.device_put(jax.random.key_data(jax.random.key(1))[None], device)  # as replicated
  size, b = config.image_size, config.batch
  host = np.random.default_rng(0)
  ring = [{'images': host.integers(0, 256, (1, b, size, size, 3), np.uint8),
           'labels': host.integers(0, config.num_classes, (1, b), np.int32)}
          for _ in range(args.distinct)]
  prefetched = devices.prefetch_to_device(itertools.cycle(ring), max(1, int(config.prefetch)),
                                          devices=[device])
  resident = next(devices.prefetch_to_device(iter(ring[:1]), 1, devices=[device]))
  t0 = time.perf_counter()
  state, metrics = step(state, resident, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  for batch in (resident, next(prefetched)):  # the state's own layout from here on
    state, metrics = step(state, batch, rng)
  jax.block_until_ready(metrics)
  phases = {'loop': prefetched, 'bare': itertools.repeat(resident)}
  runs: dict[str, list[float]] = {'loop': [], 'bare': []}
  for r in range(args.rounds):
    for name in (('loop', 'bare') if r % 2 == 0 else ('bare', 'loop')):
      state, rates = _intervals(step, state, phases[name], rng=rng, every=args.every,
                                count=args.intervals, batch=b)
      runs[name] += rates
  loop, bare = statistics.median(runs['loop']), statistics.median(runs['bare'])
  return {'config': args.config, 'variant': config.model_name, 'batch': b, 'dtype': args.dtype,
          'image_size': size, 'prefetch': int(config.prefetch), 'pp': dict(config.pp),
          'device': str(device), 'compile_s': compile_s, 'loop_img_per_s': loop,
          'bare_img_per_s': bare, 'ratio': loop / bare, 'loop_runs': runs['loop'],
          'bare_runs': runs['bare']}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  """`scripts/benchmark_loop.py`: parses flags, prints and optionally saves the rates."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--config', default='experiments/imagenet_b16.py',
                 help='experiment file[:arg] (its model keys, pp, optimizer, prefetch)')
  p.add_argument('--variant', default=None, help='model (default: the config\'s)')
  p.add_argument('--batch', type=int, default=512)
  p.add_argument('--image_size', type=int, default=None, help="default: the config's")
  p.add_argument('--num_classes', type=int, default=1000)
  p.add_argument('--dtype', default='bfloat16', choices=('float32', 'bfloat16'))
  p.add_argument('--every', type=int, default=10, help='steps per logging interval')
  p.add_argument('--intervals', type=int, default=3, help='timed intervals per phase')
  p.add_argument('--rounds', type=int, default=2, help='alternations of the two phases')
  p.add_argument('--distinct', type=int, default=4, help='host batches in the ring')
  p.add_argument('--json', default='', help='write the result to this JSON file')
  args = p.parse_args(argv)
  result = loop_vs_bare(args)
  print(f"{result['variant']} {result['dtype']} batch {result['batch']} on {result['device']}: "
        f"loop {result['loop_img_per_s']:,.0f} img/s, bare step {result['bare_img_per_s']:,.0f} "
        f"img/s, ratio {result['ratio']:.3f} (compile {result['compile_s']:.1f} s; intervals: "
        f"loop {', '.join(f'{r:,.0f}' for r in result['loop_runs'])}; bare "
        f"{', '.join(f'{r:,.0f}' for r in result['bare_runs'])})")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)
  return result
