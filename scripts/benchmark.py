r"""Speed of Mixer on the current backend: matmul peak, forward and train-step rates.

In one run, on the default JAX backend (CPU, GPU or TPU), for one model variant,
resolution and computation dtype:

* the dense matmul peak of the device in that dtype (an `M x M x M` matmul,
  M = 2048 on CPU, 8192 elsewhere);
* forward (inference) and train-step (gradients + optimizer update, the
  trainer's `train_step.make_train_step` pmapped over one device, state
  donated) images/s for each `--batch`;
* achieved FLOP/s as a fraction of that peak, with analytic FLOPs (matmuls of
  stem, token and channel MLPs and head; train = 3 x forward) and XLA's
  `cost_analysis` FLOPs;
* compile time and memory (XLA's buffer assignment; device `memory_stats` peak
  when the backend has it, else the process' peak RSS).

Timing: after a warm-up call, each of `--repeats` timed runs (of enough steps to
last `--min_time` seconds) is bracketed by two matmul-peak measurements, and
the fraction of peak is the median over runs of `rate / peak(same run)`, so a
shared, noisy machine biases rate and peak alike. Medians are reported.

`--end_to_end` instead compares the full trainer (`train.train_and_evaluate`:
tfds input pipeline, prefetch, logging) on a config (default the digits config)
with the bare pmapped step on a device-resident batch. Only this mode imports
TensorFlow (lazily).

Examples:
  python scripts/benchmark.py --variant Mixer-B_16 --batch 8,32
  python scripts/benchmark.py --variant Mixer-B_16 --batch 256 --dtype bfloat16 --json out.json
  python scripts/benchmark.py --end_to_end --json e2e.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mixer_flax import models  # noqa: E402


def analytic_flops(*, variant: str, image_size: int, num_classes: int,
                   **overrides: Any) -> dict[str, float]:
  """Matmul FLOPs (2 per multiply-add) of one image's forward pass, by part.

  Returns:
    `{'stem', 'token_mixing', 'channel_mixing', 'head', 'total'}`. With
    S = (image_size / P)^2 tokens, token mixing grows as S x D_S (as S^2 when
    D_S is scaled with S, as in high-resolution fine-tuning), the rest as S.
  """
  cfg = models.get_config(variant).to_dict()
  cfg.update({k: v for k, v in overrides.items() if v is not None})
  p, c, blocks = cfg['patch_size'], cfg['hidden_dim'], cfg['num_blocks']
  s = (image_size // p) ** 2
  parts = {
      'stem': 2.0 * s * p * p * 3 * c,
      'token_mixing': blocks * 2 * (2.0 * c * s * cfg['tokens_mlp_dim']),
      'channel_mixing': blocks * 2 * (2.0 * s * c * cfg['channels_mlp_dim']),
      'head': 2.0 * c * (num_classes or 0),
  }
  parts['total'] = sum(parts.values())
  return parts


def _timed(fn: Callable[[], Any], *, min_time: float, calls: int | None = None
           ) -> tuple[float, float, int]:
  """Times calls of `fn` (blocking on the last result) for >= `min_time` s, or `calls` calls.

  Returns:
    `(wall seconds per call, process CPU seconds per call, calls)`. CPU time
    (all threads) is what a shared machine's other load does not inflate.
  """
  n = calls or 1
  while True:
    t0, c0 = time.perf_counter(), time.process_time()
    out = None
    for _ in range(n):
      out = fn()
    jax.block_until_ready(out)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    if calls or dt >= min_time:
      return dt / n, dc / n, n
    n = max(n + 1, int(n * 1.2 * min_time / max(dt, 1e-6)))


class MatmulPeak:
  """Measures the dense `size^3` matmul rate (FLOP/s) of the default device."""

  def __init__(self, *, size: int, dtype: Any, min_time: float):
    ka, kb = jax.random.split(jax.random.key(0))
    self.a = jax.random.normal(ka, (size, size), dtype)
    self.b = jax.random.normal(kb, (size, size), dtype)
    self.fn = jax.jit(lambda a, b: a @ b)
    self.flops = 2.0 * size ** 3
    self.min_time = min_time
    jax.block_until_ready(self.fn(self.a, self.b))
    _, _, self.calls = _timed(lambda: self.fn(self.a, self.b), min_time=min_time)

  def __call__(self) -> tuple[float, float]:
    """One measurement: (FLOP per wall second, FLOP per process-CPU second)."""
    sec, cpu, _ = _timed(lambda: self.fn(self.a, self.b), min_time=self.min_time,
                         calls=self.calls)
    return self.flops / sec, self.flops / max(cpu, 1e-9)


def _memory(compiled: Any) -> dict[str, float]:
  """XLA's buffer sizes for one executable and the runtime peak so far, in MiB."""
  out: dict[str, float] = {}
  try:
    ma = compiled.memory_analysis()
    for key in ('temp_size_in_bytes', 'argument_size_in_bytes', 'output_size_in_bytes'):
      out['xla_' + key.replace('_size_in_bytes', '_mib')] = getattr(ma, key) / 2 ** 20
  except Exception:  # noqa: BLE001 - not every backend implements it.
    pass
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    out['device_peak_mib'] = stats['peak_bytes_in_use'] / 2 ** 20
  else:  # ru_maxrss is in KiB on Linux.
    out['host_peak_rss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10
  return out


def _cost_flops(compiled: Any) -> float | None:
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost['flops'])
  except Exception:  # noqa: BLE001
    return None


def _grad_cost_flops(model: Any, params: Any, images: jax.Array, labels: jax.Array
                     ) -> float | None:
  """XLA's (pre-compilation) FLOP estimate of one loss gradient; params may be replicated."""
  shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), params)

  plain = model.clone(inference_chunk=0)  # XLA counts a loop body once

  def loss(p, x, y):
    logits = plain.apply({'params': p}, x)
    return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1))

  try:
    return _cost_flops(jax.jit(jax.grad(loss)).lower(shapes, images, labels))
  except Exception:  # noqa: BLE001
    return None


def _measure(step: Callable[[], Any], *, peak: MatmulPeak, images_per_step: int,
             flops_per_step: float, repeats: int, min_time: float) -> dict[str, Any]:
  """Times `step` `repeats` times, each bracketed by two peak measurements."""
  _, _, calls = _timed(step, min_time=min_time)  # warm-up, and sizes the runs
  rates, peaks, fracs, cpu_fracs = [], [], [], []
  for _ in range(repeats):
    p0, c0 = peak()
    sec, cpu, _ = _timed(step, min_time=min_time, calls=calls)
    p1, c1 = peak()
    p, pc = 0.5 * (p0 + p1), 0.5 * (c0 + c1)
    rates.append(images_per_step / sec)
    peaks.append(p)
    fracs.append(flops_per_step / sec / p)
    cpu_fracs.append(flops_per_step / max(cpu, 1e-9) / pc)
  return {'img_per_s': statistics.median(rates), 'img_per_s_runs': rates,
          'peak_flops_runs': peaks, 'fraction_of_peak': statistics.median(fracs),
          'fraction_of_peak_runs': fracs, 'steps_per_run': calls,
          'cpu_time_fraction_of_peak': statistics.median(cpu_fracs),
          'cpu_time_fraction_of_peak_runs': cpu_fracs}


def _train_config(args: argparse.Namespace, batch: int) -> Any:
  import ml_collections  # noqa: PLC0415 - models already needs it.
  return ml_collections.ConfigDict(dict(
      model_name=args.variant, model=_model_overrides(args),
      image_size=args.image_size, batch=batch, accum_steps=args.accum_steps, total_steps=10_000,
      base_lr=1e-3, warmup_steps=100, decay_type='linear', end_lr=1e-5, optimizer='adam',
      weight_decay=0.1, optim_dtype='float32', grad_norm_clip=1.0, loss='softmax_xent',
      label_smoothing=0.0))


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
  out: dict[str, Any] = {'dtype': args.dtype}
  if args.remat:
    out['remat'] = True
  if args.inference_chunk >= 0:
    out['inference_chunk'] = args.inference_chunk
  return out


def _bench_forward(args: argparse.Namespace, model: Any, images: jax.Array, peak: MatmulPeak,
                   flops: float) -> dict[str, Any]:
  """Inference (`train=False`) on `images (B, H, W, 3)`, jitted on the default device."""
  batch = images.shape[0]
  params = jax.jit(lambda r: model.init(r, images[:1])['params'])(jax.random.key(0))
  fwd = jax.jit(lambda p, x: model.apply({'params': p}, x))
  t0 = time.perf_counter()
  compiled = fwd.lower(params, images).compile()
  compile_s = time.perf_counter() - t0
  res = _measure(lambda: compiled(params, images), peak=peak, images_per_step=batch,
                 flops_per_step=batch * flops, repeats=args.repeats, min_time=args.min_time)
  # XLA counts a loop body once: ask for the unchunked program's count (lowered, not compiled).
  plain = model.clone(inference_chunk=0)
  xla = _cost_flops(jax.jit(lambda p, x: plain.apply({'params': p}, x)).lower(params, images))
  res.update(compile_s=compile_s, memory=_memory(compiled),
             xla_gflop_per_image=xla / batch / 1e9 if xla else None)
  return res


def _bench_train(args: argparse.Namespace, model: Any, images: jax.Array, peak: MatmulPeak,
                 flops: float) -> dict[str, Any]:
  """The trainer's pmapped, donating train step (Adam) over one device; 3x forward FLOPs."""
  from mixer_flax import train_step  # noqa: PLC0415

  batch = images.shape[0]
  device = jax.devices()[0]
  config = _train_config(args, batch)
  state = train_step.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                        image_size=args.image_size)
  state = jax.device_put(jax.tree_util.tree_map(lambda x: x[None], state), device)
  step = train_step.make_train_step(config=config, model=model, devices=[device])
  labels = jax.nn.one_hot(jnp.arange(batch) % args.num_classes, args.num_classes)
  dev_batch = jax.device_put({'images': images[None], 'labels': labels[None]}, device)
  rng = jax.random.key_data(jax.random.key(2))
  t0 = time.perf_counter()
  state, metrics = step(state, dev_batch, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0  # includes one step
  holder = {'state': state}
  del state

  def run_step():
    holder['state'], m = step(holder['state'], dev_batch, rng)
    return m

  res = _measure(run_step, peak=peak, images_per_step=batch, flops_per_step=3 * batch * flops,
                 repeats=args.repeats, min_time=args.min_time)
  xla = _grad_cost_flops(model, holder['state'].params, images, labels)
  res.update(compile_s=compile_s, memory=_memory(None),
             xla_gflop_per_image=xla / batch / 1e9 if xla else None)
  return res


def bench_model(args: argparse.Namespace, peak: MatmulPeak) -> list[dict[str, Any]]:
  """Forward and train-step measurements for every batch size in `args.batch`."""
  model = models.create_model(args.variant, num_classes=args.num_classes,
                              **_model_overrides(args))
  flops = analytic_flops(variant=args.variant, image_size=args.image_size,
                         num_classes=args.num_classes)['total']
  size = args.image_size
  results = []
  for batch in args.batch:
    row: dict[str, Any] = {'batch': batch, 'analytic_gflop_per_image': flops / 1e9}
    images = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jnp.float32, -1, 1)
    if 'forward' in args.modes:
      row['forward'] = _bench_forward(args, model, images, peak, flops)
    if 'train' in args.modes:
      row['train'] = _bench_train(args, model, images, peak, flops)
    results.append(row)
  return results


def _load_config(path: str, steps: int) -> Any:
  """`get_config()` of an experiment file, set up for a timing run of `steps` steps."""
  import importlib.util  # noqa: PLC0415

  if not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, path)
  spec = importlib.util.spec_from_file_location('benchmark_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.total_steps = steps
  config.progress_every = max(steps // 10, 5)
  config.eval_every = config.checkpoint_every = steps  # eval/checkpoint only at the end
  config.warmup_steps = min(config.warmup_steps, steps)
  return config


def end_to_end(args: argparse.Namespace) -> dict[str, Any]:
  """Trainer img/s (real input pipeline) vs the bare pmapped step on a device-resident batch.

  Both rates are medians over the trainer's logging intervals (`progress_every`
  steps, metrics fetched at each interval end, as the trainer does), the first
  interval (compilation) excluded.
  """
  import tempfile  # noqa: PLC0415

  from mixer_flax import input_pipeline, metrics, train, train_step, train_utils  # noqa: PLC0415

  config = _load_config(args.config, args.steps)
  if args.data_dir:
    config.data_dir = args.data_dir
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    result = train.train_and_evaluate(config, workdir)
    wall = time.perf_counter() - t0
    records = metrics.read_metrics(workdir)
  trainer_rates = [r['img/s'] for r in records if 'img/s' in r][1:]

  num_classes = input_pipeline.get_dataset_info(config).num_classes
  config.num_classes = num_classes
  model = train.build_model(config, num_classes)
  state = train_utils.replicate(train.initial_state(config, model, jax.random.key(0)))
  step = train_step.make_train_step(config=config, model=model)
  batch = next(input_pipeline.get_train_iterator(config, seed=0))
  batch = train_utils.replicate({k: np.asarray(v)[0] for k, v in batch.items()})
  rng = train_utils.replicate(jax.random.key_data(jax.random.key(1)))
  bare_rates = []
  every = config.progress_every
  for i in range(args.steps // every):
    t = time.perf_counter()
    for _ in range(every):
      state, m = step(state, batch, rng)
    jax.device_get(m)
    if i:
      bare_rates.append(every * config.batch / (time.perf_counter() - t))
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
          'trainer_wall_s': wall, 'eval_accuracy': result.get('eval_accuracy')}


def _parse(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--variant', default='Mixer-B_16', help='a key of models.MODEL_CONFIGS')
  p.add_argument('--batch', default='8', help='comma-separated batch sizes')
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--num_classes', type=int, default=1000)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--modes', default='forward,train', help='subset of forward,train')
  p.add_argument('--accum_steps', type=int, default=1,
                 help='train step microbatches (config.accum_steps)')
  p.add_argument('--remat', action='store_true', help='rematerialise Mixer blocks (training)')
  p.add_argument('--inference_chunk', type=int, default=-1,
                 help='model inference_chunk: -1 auto (default), 0 off, k images per chunk')
  p.add_argument('--matmul_size', type=int, default=0, help='0: 2048 on CPU, 8192 otherwise')
  p.add_argument('--repeats', type=int, default=5, help='timed runs (median reported)')
  p.add_argument('--min_time', type=float, default=1.0, help='seconds per timed run')
  p.add_argument('--json', default='', help='write the results to this JSON file')
  p.add_argument('--allocator', default='default',
                 choices=('default', 'glibc', 'tcmalloc', 'hugepages'),
                 help='host allocator settings (re-executes this script with them)')
  p.add_argument('--end_to_end', action='store_true',
                 help='trainer vs bare step rate on --config (needs TensorFlow)')
  p.add_argument('--config', default='experiments/digits.py', help='config for --end_to_end')
  p.add_argument('--steps', type=int, default=300, help='trainer steps for --end_to_end')
  p.add_argument('--data_dir', default='', help='tfds data_dir for --end_to_end (default: config)')
  args = p.parse_args(argv)
  args.batch = [int(b) for b in str(args.batch).split(',') if b]
  args.modes = [m for m in args.modes.split(',') if m]
  bad = sorted(set(args.modes) - {'forward', 'train'})
  if bad:
    p.error(f'--modes: unknown {bad}; use forward and/or train')
  if args.variant not in models.MODEL_CONFIGS:
    p.error(f'--variant {args.variant!r} unknown; known: {", ".join(models.MODEL_CONFIGS)}')
  return args


TCMALLOC_PATHS = ('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
                  '/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4',
                  '/usr/lib64/libtcmalloc_minimal.so.4', '/usr/lib/libtcmalloc_minimal.so.4')


# glibc malloc settings of `--allocator glibc` (also usable from the shell for the trainer).
GLIBC_KEEP_ENV = (('MALLOC_ARENA_MAX', '1'), ('MALLOC_MMAP_MAX_', '0'),
                  ('MALLOC_TRIM_THRESHOLD_', str(2 ** 31 - 1)))


def allocator_env(name: str) -> dict[str, str]:
  """Environment variables that select host allocator `name` for a new process.

  'glibc' keeps freed memory in glibc's main heap (one arena, no mmap for big
  blocks, no trimming below 2 GiB); 'tcmalloc' preloads gperftools' tcmalloc
  (`apt-get install libtcmalloc-minimal4`); 'hugepages' asks glibc (>= 2.35) for
  transparent huge pages; 'default' changes nothing. All three keep XLA's large
  per-call scratch buffers from being page-faulted anew on every call (see
  docs/performance.md).
  """
  if name == 'default':
    return {}
  if name == 'glibc':
    return dict(GLIBC_KEEP_ENV)
  if name == 'hugepages':
    return {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
  if name == 'tcmalloc':
    found = [p for p in TCMALLOC_PATHS if os.path.exists(p)]
    if not found:
      raise SystemExit('--allocator tcmalloc: no libtcmalloc found (looked in '
                       f'{", ".join(TCMALLOC_PATHS)}); install it with '
                       '`apt-get install libtcmalloc-minimal4` or use --allocator hugepages.')
    return {'LD_PRELOAD': found[0]}
  raise SystemExit(f'--allocator {name!r}: use default, glibc, tcmalloc or hugepages.')


def _reexec_with_allocator(name: str) -> None:
  """Restarts this script with `allocator_env(name)` unless it is already in effect."""
  env = allocator_env(name)
  if all(os.environ.get(k, '') == v for k, v in env.items()):
    return
  os.environ.update(env)
  os.execv(sys.executable, [sys.executable] + sys.argv)


def environment() -> dict[str, Any]:
  """Backend, device and software versions of this run."""
  dev = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device': dev.device_kind,
          'device_count': jax.device_count(), 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'ld_preload': os.environ.get('LD_PRELOAD', ''),
          'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
          'malloc_env': {k: os.environ[k] for k, _ in GLIBC_KEEP_ENV if k in os.environ},
          'time_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}


def print_table(report: dict[str, Any]) -> None:
  """Readable summary of a `run` report."""
  env = report['environment']
  if 'end_to_end' in report:
    e = report['end_to_end']
    print(f"{env['backend']} ({env['device']}), jax {env['jax']}, {e['config']}: "
          f"{e['model_name']} @{e['image_size']}px, batch {e['batch']}, {e['steps']} steps")
    print(f"trainer {e['trainer_img_per_s']:.0f} img/s, bare step {e['bare_img_per_s']:.0f} "
          f"img/s, ratio {e['ratio']:.3f} (medians over logging intervals)")
    return
  print(f"{env['backend']} ({env['device']}), jax {env['jax']}, {report['variant']} "
        f"@{report['image_size']}px {report['dtype']}")
  if 'matmul' in report:
    mm = report['matmul']
    print(f"matmul {mm['size']}^3 {report['dtype']} peak (median): "
          f"{mm['median_gflop_per_s']:.0f} GFLOP/s")
  hdr = (f"{'mode':8} {'batch':>5} {'img/s':>9} {'of peak':>8} {'(cpu t)':>8} {'GF/img':>7} "
         f"{'XLA GF':>7} {'compile':>8} {'mem MiB':>9}")
  print(hdr)
  for row in report.get('results', []):
    for mode in ('forward', 'train'):
      if mode not in row:
        continue
      r = row[mode]
      mult = 3 if mode == 'train' else 1
      mem = r['memory']
      mib = mem.get('device_peak_mib', mem.get('host_peak_rss_mib', float('nan')))
      xla = r.get('xla_gflop_per_image')
      print(f"{mode:8} {row['batch']:5d} {r['img_per_s']:9.2f} {r['fraction_of_peak']:8.3f} "
            f"{r['cpu_time_fraction_of_peak']:8.3f} "
            f"{mult * row['analytic_gflop_per_image']:7.1f} "
            f"{(f'{xla:.1f}' if xla else '-'):>7} {r['compile_s']:7.1f}s {mib:9.0f}")


def run(argv: list[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark described by command-line `argv`; returns the report."""
  args = _parse(argv)
  if argv is None and args.allocator != 'default':
    _reexec_with_allocator(args.allocator)
  report: dict[str, Any] = {'environment': environment(), 'variant': args.variant,
                            'image_size': args.image_size, 'dtype': args.dtype,
                            'num_classes': args.num_classes, 'remat': args.remat,
                            'inference_chunk': args.inference_chunk,
                            'analytic_flops': analytic_flops(
                                variant=args.variant, image_size=args.image_size,
                                num_classes=args.num_classes)}
  if args.end_to_end:
    e = report['end_to_end'] = end_to_end(args)
    report.update(variant=e['model_name'], image_size=e['image_size'], dtype=e['dtype'],
                  num_classes=e['num_classes'], analytic_flops=analytic_flops(
                      variant=e['model_name'], image_size=e['image_size'],
                      num_classes=e['num_classes'], **e['model_overrides']))
  else:
    size = args.matmul_size or (2048 if jax.default_backend() == 'cpu' else 8192)
    peak = MatmulPeak(size=size, dtype=jnp.dtype(args.dtype), min_time=min(args.min_time, 0.3))
    report['results'] = bench_model(args, peak)
    runs = [p for row in report['results'] for m in ('forward', 'train') if m in row
            for p in row[m]['peak_flops_runs']]
    report['matmul'] = {'size': size, 'median_gflop_per_s': statistics.median(runs) / 1e9
                        if runs else peak()[0] / 1e9}
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=2, default=float)
  print_table(report)
  return report


if __name__ == '__main__':
  run()
