r"""Input pipeline throughput (images/s) versus what a training step consumes.

Measures, for one experiment config (default: experiments/digits.py):
  1. the train iterator alone (numpy batches, no device prefetch),
  2. the eval iterator alone (one pass),
  3. unless --no-step, the pmapped train step on a fixed batch (what the
     trainer consumes), and the ratio pipeline / step.

Command line: `scripts/benchmark_input.py`.

`--jpeg_folder DIR` instead times the host train pipeline of an ImageNet config (default
experiments/imagenet_b16.py: Inception crop 224 from `decode_and_crop_jpeg`, flip, batching;
RandAugment and mixup run on the device) on an ImageNet-like folder (written into DIR when it
is empty: perf/jpeg_folder.py, `--num_images`), for each `--tf_threads` setting in alternating
rounds: wall-clock images/s and process CPU seconds per image (all threads; other processes'
load does not inflate it), so img/s per core = 1 / (CPU s per image), and the cores a step
consuming R img/s needs = R x (CPU s per image). `--decode_levers` times the candidate
cheaper decodes instead (perf/decode_levers.py).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import jax
import ml_collections

from mixer_flax import config as config_lib
from mixer_flax import entry

DIGITS = 'experiments/digits.py'


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


def timed(iterator, *, batches: int, per_batch: int) -> tuple[float, float]:
  """(images/s, process CPU s per image) over `batches` batches after one warm-up batch."""
  next(iterator)
  cpu, start = time.process_time(), time.perf_counter()
  for _ in range(batches):
    next(iterator)
  images = batches * per_batch
  return images / (time.perf_counter() - start), (time.process_time() - cpu) / images


def jpeg_folder_rates(args: argparse.Namespace) -> dict[int, dict[str, float]]:
  """Host train pipeline on the JPEG folder per tf_threads: img/s and CPU s per image."""
  from mixer_flax.data import pipeline, sources
  from mixer_flax.perf import jpeg_folder

  root = jpeg_folder.write_jpeg_folder(args.jpeg_folder, num_images=args.num_images)
  count, kib = jpeg_folder.folder_stats(root)
  config_path = 'experiments/imagenet_b16.py' if args.config == DIGITS else args.config
  config = config_lib.load_experiment(config_path)
  config.update(dataset='image_folder', folder_root=root, train_split='train',
                eval_split='test', num_classes=None, prefetch=0, batch=args.batch or 128)
  for assignment in args.set:
    _set(config, assignment)
  settings = {}
  for t in _thread_list(args.tf_threads) or [config.tf_threads]:
    cfg = config.copy_and_resolve_references()
    cfg.tf_threads = t
    settings[sources.tf_options(t).threading.private_threadpool_size] = cfg
  print(f'{root}: {count} JPEGs, mean {kib:.1f} KiB; {config_path} pp={dict(config.pp)}; '
        f'batch {config.batch}; cpus {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}')
  # Alternating rounds (a fresh iterator each, so no background prefetch of another setting
  # runs while one is timed), medians per setting: a shared machine's load drifts.
  samples: dict[int, list[tuple[float, float]]] = {t: [] for t in settings}
  for r in range(args.rounds):  # order A B, B A, ...: neither always follows the other
    for t, cfg in list(settings.items())[::1 if r % 2 == 0 else -1]:
      iterator = pipeline.get_train_iterator(cfg, seed=0)
      samples[t].append(timed(iterator, batches=args.batches, per_batch=config.batch))
      del iterator
      gc.collect()  # stops the finished iterator's background threads
  results = {}
  for t, runs in samples.items():
    rate = statistics.median(r for r, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    results[t] = {'img_per_s': rate, 'cpu_s_per_image': cpu, 'img_per_s_per_core': 1 / cpu}
    print(f'tf_threads {t}: {rate:,.0f} images/s wall; {1e3 * cpu:.3f} ms CPU per image = '
          f'{1 / cpu:,.0f} images/s per core (rounds: '
          + ', '.join(f'{r:,.0f} img/s {1e3 * c:.3f} ms' for r, c in runs) + ')')
  best = min(r['cpu_s_per_image'] for r in results.values())
  print(f"cores needed by a step consuming R img/s: R x {best:.3g} (this machine's cores)")
  return results


def _thread_list(spec: str | None) -> list[int]:
  return [int(t) for t in str(spec).split(',') if t.strip()] if spec else []


@entry.command
def main(argv: list[str] | None = None) -> None:
  """`scripts/benchmark_input.py`: parses flags, prints the three rates."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default=DIGITS, help='experiment file[:arg]')
  parser.add_argument('--batches', type=int, default=50)
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--tf_threads', default=None,
                      help='tf.data threads (0: half the cores); --jpeg_folder: a list, e.g. 1,2')
  parser.add_argument('--set', action='append', default=[], help='key=value override')
  parser.add_argument('--no-step', dest='step', action='store_false')
  parser.add_argument('--jpeg_folder', default=None, help='time the host train pipeline of an '
                      'ImageNet config on this (generated) JPEG folder: img/s, CPU s per image')
  parser.add_argument('--num_images', type=int, default=2000,
                      help='--jpeg_folder: images to write when the folder is empty')
  parser.add_argument('--decode_levers', action='store_true', help='--jpeg_folder: time the '
                      'candidate cheaper decodes against the default (perf/decode_levers.py)')
  parser.add_argument('--batch', type=int, default=None, help='override config.batch')
  parser.add_argument('--rounds', type=int, default=3, help='--jpeg_folder: alternating rounds')
  parser.add_argument('--images', type=int, default=1000, help='--decode_levers: images timed')
  args = parser.parse_args(argv)
  if args.jpeg_folder and args.decode_levers:
    from mixer_flax.perf import decode_levers
    decode_levers.main(args)
    return
  if args.jpeg_folder:
    jpeg_folder_rates(args)
    return

  config = config_lib.load_experiment(args.config)
  config.prefetch = 0
  config.batch = args.batch or config.batch
  if args.data_dir:
    config.data_dir = args.data_dir
  if args.tf_threads is not None:
    config.tf_threads = _thread_list(args.tf_threads)[0]
  for assignment in args.set:
    _set(config, assignment)

  from mixer_flax.data import pipeline, sources

  threads = sources.tf_options(config.get('tf_threads', 0)).threading
  print(f'dataset={config.dataset} image_size={config.image_size} batch={config.batch} '
        f'pp={dict(config.pp)} tf threads={threads.private_threadpool_size} '
        f'cpus={os.cpu_count()}')
  train = pipeline.get_train_iterator(config, seed=0)
  train_rate, _ = timed(train, batches=args.batches, per_batch=config.batch)
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
