"""Command line of `scripts/benchmark.py` (the measurements: `perf/benchmark.py`)."""

from __future__ import annotations

import argparse
from typing import Any

from mixer_flax import models
from mixer_flax.data import augment, augment_ops
from mixer_flax.models import formulations

DESCRIPTION = ('Speed of Mixer on the current backend: matmul peak, forward and train-step rates '
               '(see mixer_flax/perf/benchmark.py).')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  """`scripts/benchmark.py`'s arguments, checked (what each does: `perf/benchmark.py`)."""
  p = argparse.ArgumentParser(description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--variant', default='Mixer-B_16', help='a key of models.MODEL_CONFIGS')
  p.add_argument('--batch', default='8', help='comma-separated batch sizes')
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--num_classes', type=int, default=1000)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--modes', default='forward,train',
                 help='subset of forward,train,train_augment,train_sam (train_augment: the train '
                      'step with RandAugment 2/15 + mixup 0.5 on the device, uint8 inputs; '
                      'train_sam: with SAM, two forward/backward passes)')
  p.add_argument('--randaug_mode', default=None, choices=augment.MODES,
                 help="train_augment: op selection (default: the backend's, data/augment.py)")
  p.add_argument('--randaug_histogram', default=None, choices=augment_ops.HISTOGRAMS,
                 help="train_augment: how equalize's histogram is counted (default: the "
                      "backend's)")
  p.add_argument('--accum_steps', type=int, default=1,
                 help='train step microbatches (config.accum_steps)')
  p.add_argument('--remat', action='store_true', help='rematerialise Mixer blocks (training)')
  p.add_argument('--formulation', default=None, choices=formulations.NAMES,
                 help="model formulation (default: the backend's, with its inference chunking; "
                      'a name: that formulation unchunked; models/formulations.py)')
  p.add_argument('--also', action='append', default=[], metavar='KEY=VALUE[,KEY=VALUE]',
                 help='also time the model with these create_model arguments, in the same '
                      'process right after the baseline (repeatable), e.g. formulation=snc_md')
  p.add_argument('--matmul_size', type=int, default=0, help='0: 2048 on CPU, 8192 otherwise')
  p.add_argument('--repeats', type=int, default=5, help='timed runs (median reported)')
  p.add_argument('--min_time', type=float, default=1.0, help='seconds per timed run')
  p.add_argument('--json', default='', help='write the results to this JSON file')
  p.add_argument('--allocator', default='default',
                 choices=('default', 'glibc', 'tcmalloc', 'hugepages'),
                 help='host allocator settings (re-executes this script with them)')
  p.add_argument('--bound', action='store_true',
                 help='also time the matmul chain alone (forward, and its gradient for train)')
  p.add_argument('--compare_timm', action='store_true',
                 help='also time timm + torch.compile in a subprocess (needs torch, timm)')
  p.add_argument('--timm_compile', type=int, default=1, help='0: timm peer without compile')
  p.add_argument('--timm_timeout', type=float, default=1800,
                 help='seconds the timm peer may take (then its rows are left out)')
  p.add_argument('--end_to_end', action='store_true',
                 help='trainer vs bare step rate on --config (needs TensorFlow)')
  p.add_argument('--config', default='experiments/digits.py', help='config for --end_to_end')
  p.add_argument('--steps', type=int, default=300, help='trainer steps for --end_to_end')
  p.add_argument('--data_dir', default='', help='tfds data_dir for --end_to_end (default: config)')
  args = p.parse_args(argv)
  args.batch = [int(b) for b in str(args.batch).split(',') if b]
  args.modes = [m for m in args.modes.split(',') if m]
  bad = sorted(set(args.modes) - {'forward', 'train', 'train_augment', 'train_sam'})
  if bad:
    p.error(f'--modes: unknown {bad}; use forward, train, train_augment and/or train_sam')
  if args.variant not in models.MODEL_CONFIGS:
    p.error(f'--variant {args.variant!r} unknown; known: {", ".join(models.MODEL_CONFIGS)}')
  try:
    args.also = [parse_overrides(spec) for spec in args.also]
  except ValueError as e:
    p.error(f'--also: {e}')
  return args


def parse_overrides(spec: str) -> dict[str, Any]:
  """'formulation=snc_md,remat=1' -> {'formulation': 'snc_md', 'remat': True}.

  Keys: `formulation` and `models.OVERRIDABLE`. Values: integers, true/false (1/0 for
  remat), else strings.
  """
  keys = ('formulation', *models.OVERRIDABLE)
  out: dict[str, Any] = {}
  for item in filter(None, spec.split(',')):
    key, sep, value = item.partition('=')
    if not sep or key not in keys:
      raise ValueError(f'{item!r} is not KEY=VALUE with KEY one of {", ".join(keys)}')
    if key == 'formulation':
      formulations.resolve(value)  # raises for an unknown name
    if key == 'remat' or value.lower() in ('true', 'false'):
      out[key] = value.lower() in ('1', 'true')
    else:
      out[key] = int(value) if value.lstrip('-').isdigit() else value
  if not out:
    raise ValueError(f'{spec!r} names no override')
  return out
