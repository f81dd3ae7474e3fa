r"""The peer: timm's MLP-Mixer with `torch.compile` (bf16 autocast), timed like ours.

Runs in its own process (`python -m mixer_flax.perf.peer ...`, started by
`scripts/benchmark.py --compare_timm` before JAX claims the device), so that
PyTorch and JAX never share an accelerator's memory. Prints one JSON object:

* `torch_peak_tflops`: PyTorch's own `M x M x M` matmul rate in the same dtype,
  measured before and after every timed run, as in `perf/timing.py`;
* per mode (`forward`: inference, `torch.inference_mode`; `train`: cross-entropy,
  backward, gradient clipping at 1.0 and AdamW, weight decay 0.1, fused on
  CUDA): median img/s over `--repeats` runs and the fraction of the same run's
  torch peak (`--gflop_per_image` analytic FLOPs, train = 3x).

The model is `timm.models.mlp_mixer.MlpMixer` with the variant's dimensions
(for B/16 at 224 px the same network as timm's `mixer_b16_224`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def _ratio(width: int, hidden: int) -> float:
  """mlp_ratio r with timm's `int(r * hidden) == width` exactly."""
  ratio = width / hidden
  return ratio if int(ratio * hidden) == width else (width + 0.5) / hidden


def _timed(fn: Callable[[], Any], sync: Callable[[], None], calls: int) -> float:
  t0 = time.perf_counter()
  for _ in range(calls):
    fn()
  sync()
  return (time.perf_counter() - t0) / calls


def _calls_for(fn: Callable[[], Any], sync: Callable[[], None], min_time: float) -> int:
  sec = _timed(fn, sync, 1)
  return max(1, int(min_time / max(sec, 1e-6)) + 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Measures the peer; returns the JSON-able report."""
  import torch
  import torch.nn.functional as F

  from mixer_flax.checkpoint.timm import import_timm_mlp_mixer
  mlp_mixer = import_timm_mlp_mixer()  # tolerates the CPU torchvision wheel
  import timm

  cuda = torch.cuda.is_available()
  dev = 'cuda' if cuda else 'cpu'
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  dtype = {'bfloat16': torch.bfloat16, 'float32': torch.float32}[args.dtype]
  size = args.matmul_size or (8192 if cuda else 2048)  # as perf/benchmark.py
  a, b = (torch.randn(size, size, device=dev, dtype=dtype) for _ in range(2))
  peak_calls = _calls_for(lambda: a @ b, sync, 0.3)

  def peak() -> float:
    return 2.0 * size ** 3 / _timed(lambda: a @ b, sync, peak_calls)

  model = mlp_mixer.MlpMixer(
      num_classes=args.num_classes, img_size=args.image_size, patch_size=args.patch_size,
      num_blocks=args.num_blocks, embed_dim=args.hidden_dim,
      mlp_ratio=(_ratio(args.tokens_mlp_dim, args.hidden_dim),
                 _ratio(args.channels_mlp_dim, args.hidden_dim))).to(dev)
  net = torch.compile(model) if args.compile else model
  autocast = (lambda: torch.autocast(dev, dtype=dtype)) if args.dtype == 'bfloat16' else (
      lambda: torch.autocast(dev, enabled=False))
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True if cuda
                          else None)
  report: dict[str, Any] = {'torch': torch.__version__, 'timm': timm.__version__,
                            'device': torch.cuda.get_device_name() if cuda else 'cpu',
                            'compile': bool(args.compile), 'dtype': args.dtype,
                            'matmul_size': size, 'results': [],
                            'num_params': sum(int(v.numel()) for v in model.parameters())}
  peaks = []
  for batch in args.batch:
    x = torch.rand(batch, 3, args.image_size, args.image_size, device=dev) * 2 - 1
    y = torch.arange(batch, device=dev) % args.num_classes
    row: dict[str, Any] = {'batch': batch}

    def forward(x=x):
      with torch.inference_mode(), autocast():
        return net(x)

    def train_step(x=x, y=y):
      with autocast():
        loss = F.cross_entropy(net(x), y)
      loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
      opt.zero_grad(set_to_none=True)

    for mode, fn, mult in (('forward', forward, 1), ('train', train_step, 3)):
      if mode not in args.modes:
        continue
      model.train(mode == 'train')
      t0 = time.perf_counter()
      fn()
      sync()
      compile_s = time.perf_counter() - t0
      calls = _calls_for(fn, sync, args.min_time)
      rates, fracs = [], []
      for _ in range(args.repeats):
        p0 = peak()
        sec = _timed(fn, sync, calls)
        p = 0.5 * (p0 + peak())
        peaks.append(p)
        rates.append(batch / sec)
        fracs.append(mult * args.gflop_per_image * 1e9 * batch / sec / p)
      row[mode] = {'img_per_s': statistics.median(rates), 'img_per_s_runs': rates,
                   'fraction_of_torch_peak': statistics.median(fracs), 'compile_s': compile_s,
                   'steps_per_run': calls}
    report['results'].append(row)
  report['torch_peak_tflops'] = statistics.median(peaks) / 1e12 if peaks else peak() / 1e12
  return report


def main(argv: list[str] | None = None) -> None:
  """Command line: dimensions and timing settings as passed by `perf/benchmark.py`."""
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  for name in ('image_size', 'num_classes', 'patch_size', 'num_blocks', 'hidden_dim',
               'tokens_mlp_dim', 'channels_mlp_dim', 'repeats', 'compile'):
    p.add_argument(f'--{name}', type=int, required=name != 'compile', default=1)
  p.add_argument('--batch', required=True, help='comma-separated batch sizes')
  p.add_argument('--modes', default='forward,train')
  p.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float32'))
  p.add_argument('--min_time', type=float, default=1.0)
  p.add_argument('--matmul_size', type=int, default=0, help='0: 2048 on CPU, 8192 on CUDA')
  p.add_argument('--gflop_per_image', type=float, required=True)
  args = p.parse_args(argv)
  args.batch = [int(b) for b in args.batch.split(',') if b]
  args.modes = args.modes.split(',')
  print(json.dumps(run(args)))


if __name__ == '__main__':
  main()


def launch(bench_args: argparse.Namespace, python: str | None = None) -> dict[str, Any]:
  """Runs the peer in a fresh process; its report, or `{'error': ...}`.

  `bench_args`: `perf/benchmark.py`'s arguments (variant, sizes, timing,
  `timm_compile`, `timm_timeout`). `python`: the interpreter (default
  `$TORCH_PYTHON`, else this one).
  """
  import os
  import subprocess
  import sys

  from mixer_flax import models
  from mixer_flax.perf.flops import analytic_flops
  a = bench_args
  cfg = models.get_config(a.variant)
  gflop = analytic_flops(variant=a.variant, image_size=a.image_size,
                         num_classes=a.num_classes)['total'] / 1e9
  cmd = [python or os.environ.get('TORCH_PYTHON') or sys.executable, '-m', 'mixer_flax.perf.peer',
         f'--batch={",".join(map(str, a.batch))}', f'--modes={",".join(a.modes)}',
         f'--dtype={a.dtype}', f'--image_size={a.image_size}', f'--num_classes={a.num_classes}',
         f'--matmul_size={a.matmul_size}', f'--repeats={a.repeats}', f'--min_time={a.min_time}',
         f'--compile={int(a.timm_compile)}', f'--gflop_per_image={gflop}'] + [
             f'--{k}={cfg[k]}' for k in ('patch_size', 'num_blocks', 'hidden_dim',
                                         'tokens_mlp_dim', 'channels_mlp_dim')]
  # The package of this process, installed or not.
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
  try:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=a.timm_timeout)
  except subprocess.TimeoutExpired:
    return {'error': f'timm peer: no result within {a.timm_timeout:.0f} s'}
  lines = out.stdout.strip().splitlines()
  if out.returncode or not lines:
    tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
    return {'error': f'timm peer failed (exit {out.returncode}): {" | ".join(tail)}'}
  return json.loads(lines[-1])


def merge(timm_report: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
  """Adds the peer's rows to `report['results']` (`forward_timm`, `train_timm`).

  Each also gets `fraction_of_peak` against the JAX matmul peak of the same
  benchmark run; returns the peer's other fields (versions, torch peak, error).
  """
  jax_peak = report['matmul']['median_gflop_per_s'] * 1e9
  flops = report['analytic_flops']['total']
  by_batch = {r['batch']: r for r in timm_report.get('results', [])}
  for row in report['results']:
    for mode, mult in (('forward', 1), ('train', 3)):
      res = by_batch.get(row['batch'], {}).get(mode)
      if res:
        row[f'{mode}_timm'] = dict(res, fraction_of_peak=mult * flops * res['img_per_s']
                                   / jax_peak)
  return {k: v for k, v in timm_report.items() if k != 'results'}
