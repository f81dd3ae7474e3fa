r"""Speed of Mixer on the current backend (`scripts/benchmark.py`): matmul peak, forward, train.

In one run, on the default JAX backend (CPU, GPU or TPU), for one model variant, resolution and
computation dtype:

* the dense matmul peak of the device in that dtype (an `M x M x M` matmul, M = 2048 on CPU,
  8192 elsewhere);
* forward (inference) and train-step (gradients + optimizer update, the trainer's
  `training.step.make_train_step` pmapped over one device, state donated) images/s per `--batch`;
* achieved FLOP/s as a fraction of that peak, with analytic FLOPs (matmuls of stem, token and
  channel MLPs and head; train = 3 x forward) and XLA's `cost_analysis` FLOPs;
* compile time and memory (XLA's buffer assignment; device `memory_stats` peak when the
  backend has it, else the process' peak RSS).

Timing: after a warm-up call, each of `--repeats` timed runs (of enough steps to last
`--min_time` seconds) is bracketed by two matmul-peak measurements, and the fraction of peak is
the median over runs of `rate / peak(same run)`, so a shared, noisy machine biases rate and
peak alike. Medians are reported.

`--bound` also times the model's matmul chain alone (`perf/bound.py`: forward, and its gradient
when training), `--compare_timm` timm's Mixer with `torch.compile` (`perf/peer.py`, a
subprocess run before JAX claims the device), so one report shows ours / bound / peer side by
side, all against the same run's JAX matmul peak. `--formulation NAME` runs that formulation of
the model (unchunked; default: the backend's, models/formulations.py), `--also
formulation=NAME` times another one in the same process right after the baseline (the GPU
candidates: formulations.CANDIDATES).

`--modes ...,train_augment` adds the train step as the trainer now runs it: uint8 images and
class indices in, RandAugment 2 layers m=15 + mixup 0.5 on the device (no TensorFlow), timed in
the same run as `train`, and prints the augmentation's share of the step (`--randaug_mode
compact|switch`, `--randaug_histogram scatter|onehot_int8` replace the backend's defaults for
this process: data/augment.py, mixer_flax/backends.py).
`--modes ...,train_sam`: the train step with SAM (training/sam.py, rho 0.05; 6 x forward FLOPs).

`--end_to_end` instead compares the full trainer (`train.train_and_evaluate`: tfds input
pipeline, prefetch, logging) on a config (default the digits config) with the bare pmapped step
on a device-resident batch. Only this mode imports TensorFlow (lazily).

Examples: scripts/benchmark.py and docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from mixer_flax import backends, entry, models
from mixer_flax import config as config_lib
from mixer_flax.data import on_device
from mixer_flax.models import formulations
from mixer_flax.perf import bound as bound_lib
from mixer_flax.perf import cli, end_to_end, host, peer
from mixer_flax.perf import report as report_lib
from mixer_flax.perf.flops import analytic_flops, cost_flops, grad_cost_flops
from mixer_flax.perf.timing import MatmulPeak, measure, memory
from mixer_flax.training import step as step_lib

# The paper's ImageNet recipe (experiments/imagenet_b16.py): RandAugment 2 layers m=15, mixup 0.5.
PAPER_AUGMENTATION = dict(randaug_layers=2, randaug_magnitude=15, mixup_alpha=0.5)


def _train_config(args: argparse.Namespace, batch: int) -> Any:
  c = config_lib.base_config()
  c.update(dict(model_name=args.variant, image_size=args.image_size, batch=batch,
                accum_steps=args.accum_steps, base_lr=1e-3, warmup_steps=100,
                decay_type='linear', end_lr=1e-5, optimizer='adam', weight_decay=0.1))
  c.model = _model_overrides(args)
  return c


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
  """`create_model` arguments of the baseline model (`--also` adds to them)."""
  return {'dtype': args.dtype, 'formulation': args.formulation, 'remat': args.remat}


@contextlib.contextmanager
def _randaug_defaults(args: argparse.Namespace):
  """The backend table with `--randaug_mode` / `--randaug_histogram`, for this process only."""
  saved = dict(backends.DEFAULTS)
  backends.DEFAULTS[jax.default_backend()] = backends.current()._replace(**{
      k: getattr(args, k) for k in ('randaug_mode', 'randaug_histogram') if getattr(args, k)})
  try:
    yield
  finally:
    backends.DEFAULTS.clear()
    backends.DEFAULTS.update(saved)


def _bench_forward(args: argparse.Namespace, model: Any, images: jax.Array, peak: MatmulPeak,
                   flops: float) -> dict[str, Any]:
  """Inference (`train=False`) on `images (B, H, W, 3)`, jitted on the default device."""
  batch = images.shape[0]
  params = jax.jit(lambda r: model.init(r, images[:1])['params'])(jax.random.key(0))
  fwd = jax.jit(lambda p, x: model.apply({'params': p}, x))
  t0 = time.perf_counter()
  compiled = fwd.lower(params, images).compile()
  compile_s = time.perf_counter() - t0
  res = measure(lambda: compiled(params, images), peak=peak, images_per_step=batch,
                flops_per_step=batch * flops, repeats=args.repeats, min_time=args.min_time)
  # XLA counts a loop body once: ask for the unchunked program's count (lowered, not compiled).
  plain = formulations.pinned(model)
  xla = cost_flops(jax.jit(lambda p, x: plain.apply({'params': p}, x)).lower(params, images))
  res.update(compile_s=compile_s, memory=memory(compiled),
             xla_gflop_per_image=xla / batch / 1e9 if xla else None)
  return res


def _bench_train(args: argparse.Namespace, model: Any, images: jax.Array, peak: MatmulPeak,
                 flops: float, *, augment: bool = False, sam: bool = False) -> dict[str, Any]:
  """The trainer's pmapped, donating train step (Adam) over one device; 3x forward FLOPs.

  With `augment` the step gets what the trainer ships, uint8 images and class indices,
  and applies the paper's augmentation on the device (PAPER_AUGMENTATION); `sam`: 2 passes.
  """
  batch, device, passes = images.shape[0], jax.devices()[0], 2 if sam else 1
  config = _train_config(args, batch)
  config.sam = dict(rho=0.05 if sam else None, rho_min=None, alpha=0.0)
  state = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                      image_size=args.image_size)
  state = jax.device_put(jax.tree_util.tree_map(lambda x: x[None], state), device)
  labels = jax.nn.one_hot(jnp.arange(batch) % args.num_classes, args.num_classes)
  dev_batch = {'images': images[None], 'labels': labels[None]}
  if augment:
    config.pp = dict(PAPER_AUGMENTATION)
    dev_batch = {'images': jnp.round(images[None] * 127.5 + 127.5).astype(jnp.uint8),
                 'labels': (jnp.arange(batch) % args.num_classes)[None]}
  step = step_lib.make_train_step(config=config, model=model, devices=[device])
  dev_batch = jax.device_put(dev_batch, device)
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

  res = measure(run_step, peak=peak, images_per_step=batch, repeats=args.repeats,
                flops_per_step=3 * passes * batch * flops, min_time=args.min_time)
  xla = passes * grad_cost_flops(model, holder['state'].params, images, labels)
  res.update(compile_s=compile_s, memory=memory(None),
             xla_gflop_per_image=xla / batch / 1e9 if xla else None)
  if augment:  # the augmentation alone, jitted on the same device: its share of the step
    spec = on_device.AugmentSpec.from_config(config, args.num_classes)
    one = jax.device_put({k: v[0] for k, v in dev_batch.items()}, device)
    prepare = jax.jit(lambda b: on_device.train_inputs(
        b, spec=spec, rng=jax.random.key(3), step=jnp.int32(0), first_index=0))
    jax.block_until_ready(prepare(one))
    alone = measure(lambda: prepare(one), peak=peak, images_per_step=batch, flops_per_step=0.0,
                    repeats=args.repeats, min_time=args.min_time)
    res.update(augment_only_ms=1e3 * batch / alone['img_per_s'],
               augment_share=res['img_per_s'] / alone['img_per_s'])
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
    for mode, grad in (('forward', False), ('train', True)):  # the matmul-only bound
      if args.bound and mode in args.modes:
        row['grad_bound' if grad else 'forward_bound'] = bound_lib.bench_bound(
            model, images, peak=peak, flops=flops, grad=grad, repeats=args.repeats,
            min_time=args.min_time)
    for overrides in args.also:  # the same process, right after the baseline
      other = models.create_model(args.variant, num_classes=args.num_classes,
                                  **{**_model_overrides(args), **overrides})
      alt: dict[str, Any] = {'overrides': overrides}
      for mode, bench in (('forward', _bench_forward), ('train', _bench_train)):
        if mode in row:
          alt[mode] = bench(args, other, images, peak, flops)
          alt[mode]['vs_baseline'] = alt[mode]['img_per_s'] / row[mode]['img_per_s']
          alt[mode]['vs_baseline_of_peak'] = (alt[mode]['fraction_of_peak']
                                              / row[mode]['fraction_of_peak'])
      row.setdefault('also', []).append(alt)
    if 'train_sam' in args.modes:  # two forward/backward passes: the cost vs 'train'
      row['train_sam'] = _bench_train(args, model, images, peak, flops, sam=True)
    if 'train_augment' in args.modes:
      row['train_augment'] = _bench_train(args, model, images, peak, flops, augment=True)
      if 'train' in row:  # whole-step comparison (noisy on a shared machine)
        row['augment_cost'] = 1 - row['train_augment']['img_per_s'] / row['train']['img_per_s']
    results.append(row)
  return results


@entry.command
def run(argv: list[str] | None = None) -> dict[str, Any]:
  """Runs the benchmark described by command-line `argv`; returns the report."""
  args = cli.parse_args(argv)
  if argv is None and args.allocator != 'default':
    host.reexec_with_allocator(args.allocator)
  timm_report = None
  if args.compare_timm and not args.end_to_end:  # first: before JAX claims the device
    timm_report = peer.launch(args)
  defaults = backends.current()
  report: dict[str, Any] = {'environment': host.environment(), 'variant': args.variant,
                            'image_size': args.image_size, 'dtype': args.dtype,
                            'num_classes': args.num_classes, 'remat': args.remat,
                            'formulation': formulations.resolve(args.formulation),
                            'inference_chunked': (args.formulation is None
                                                  and defaults.inference_chunk_bytes > 0),
                            'randaug': [args.randaug_mode or defaults.randaug_mode,
                                        args.randaug_histogram or defaults.randaug_histogram],
                            'analytic_flops': analytic_flops(
                                variant=args.variant, image_size=args.image_size,
                                num_classes=args.num_classes)}
  if args.end_to_end:
    e = report['end_to_end'] = end_to_end.end_to_end(args)
    report.update(variant=e['model_name'], image_size=e['image_size'], dtype=e['dtype'],
                  num_classes=e['num_classes'], analytic_flops=analytic_flops(
                      variant=e['model_name'], image_size=e['image_size'],
                      num_classes=e['num_classes'], **e['model_overrides']))
  else:
    size = args.matmul_size or (2048 if jax.default_backend() == 'cpu' else 8192)
    peak = MatmulPeak(size=size, dtype=jnp.dtype(args.dtype), min_time=min(args.min_time, 0.3))
    with _randaug_defaults(args):
      report['results'] = bench_model(args, peak)
    runs = [p for row in report['results'] for m in ('forward', 'train', 'train_augment',
            'train_sam') if m in row for p in row[m]['peak_flops_runs']]
    report['matmul'] = {'size': size, 'median_gflop_per_s': statistics.median(runs) / 1e9
                        if runs else peak()[0] / 1e9}
    if timm_report is not None:
      report['timm'] = peer.merge(timm_report, report)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=2, default=float)
  report_lib.print_table(report)
  return report
