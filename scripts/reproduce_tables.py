r"""One command per paper table: the paper's numbers and ours side by side (Markdown).

Tables:
  1           Table 1 (architectures) measured from the model definitions; must match.
  throughput  forward images/sec of every variant on this machine, ranking vs the paper's
              img/sec/core (TPUv3), FLOPs per image (XLA cost analysis and analytic).
  3, 2, cifar10  accuracy rows evaluated from checkpoints (--checkpoint_dir) on prepared
              tfds data (--data_dir); rows without them say what is missing.
  permutation paper section 3.4 on digits: original / patch+pixel / global pixel shuffle.

Each run prints the Markdown and writes `<out>/table_<name>.md` (+ `.json`); throughput and
accuracy tables also write a plot in the spirit of the paper's Fig. 3 (`<out>/fig3_<name>.png`).

Examples:
  python scripts/reproduce_tables.py --table 1
  python scripts/reproduce_tables.py --table throughput --batch 8 --dtype float32
  python scripts/reproduce_tables.py --table throughput --variants Mixer-S_32,Mixer-B_32 --batch 2
  python scripts/reproduce_tables.py --table 3 --checkpoint_dir ckpts --data_dir ~/tfds_data
  python scripts/reproduce_tables.py --table permutation --steps 1200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mixer_flax import tables  # noqa: E402

TABLES = ('1', 'throughput', '2', '3', 'cifar10', 'permutation')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--table', required=True, choices=TABLES)
  p.add_argument('--out', default='results', help='output directory.')
  p.add_argument('--variants', default=','.join(tables.PAPER_VARIANTS),
                 help='throughput: comma-separated model names.')
  p.add_argument('--batch', type=int, default=8, help='throughput: images per forward call.')
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--iters', type=int, default=3, help='throughput: timed calls (best is kept).')
  p.add_argument('--checkpoint_dir', default=None,
                 help='accuracy tables: <dir>/<row key>/<dataset>.npz (see docs/reproducing.md).')
  p.add_argument('--data_dir', default=None, help='tfds data_dir with the prepared datasets.')
  p.add_argument('--manual_dir', default=None, help='tfds manual_dir (ImageNet archives).')
  p.add_argument('--eval_batch', type=int, default=256)
  p.add_argument('--steps', type=int, default=None,
                 help='permutation: training steps per variant (default: digits config).')
  p.add_argument('--same_start', action='store_true',
                 help='permutation: also train original and patch_pixel from one relabelled '
                      'initialisation and compare the final weights (2 more runs).')
  return p.parse_args(argv)


def machine_description() -> str:
  """'2 CPU cores (x86_64), jax cpu x1' style description of this machine."""
  import jax

  devices = jax.local_devices()
  kind = devices[0].device_kind if devices else 'none'
  load = f', load average {os.getloadavg()[0]:.1f} at start' if hasattr(os, 'getloadavg') else ''
  return (f'{os.cpu_count()} CPU cores ({platform.machine()}), JAX backend '
          f'{jax.default_backend()} ({kind} x{len(devices)}){load}')


def _write(out: str, name: str, markdown: str, data) -> None:
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, f'table_{name}.md'), 'w') as f:
    f.write(markdown + '\n')
  with open(os.path.join(out, f'table_{name}.json'), 'w') as f:
    json.dump(data, f, indent=2, default=str)


def plot_fig3(path: str, *, ours_speed: dict[str, float] | None = None,
              ours_top1: dict[str, tuple[float, float]] | None = None) -> None:
  """Fig. 3-style plot: ImageNet top-1 vs throughput, paper points and ours.

  Args:
    path: output .png.
    ours_speed: model -> our img/s (right panel: ours vs the paper's img/s/core).
    ours_top1: row label -> (paper img/s/core of that model, our top-1 %) (left panel).
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
  speed = tables.PAPER_IMG_PER_SEC_CORE
  jft = sorted(tables.PAPER_JFT_TOP1, key=speed.get)
  ax0.plot([speed[m] for m in jft], [tables.PAPER_JFT_TOP1[m] for m in jft], 'o-',
           label='paper: JFT-300M')
  for m in jft:
    ax0.annotate(m.replace('Mixer-', ''), (speed[m], tables.PAPER_JFT_TOP1[m]), fontsize=7)
  for prefix, marker, label in (('i1k_', 'v', 'paper: ImageNet'), ('i21k_', '^',
                                                                     'paper: ImageNet-21k')):
    pts = [((tables.PAPER_IMG_PER_SEC_CORE_448 if r.image_size == 448 else speed)[r.model],
            r.paper['ImNet']) for r in tables.ACCURACY_ROWS
           if r.table == '3' and r.key.startswith(prefix)]
    ax0.plot(*zip(*pts), marker, linestyle='none', label=label)
  for label, (x, acc) in (ours_top1 or {}).items():
    ax0.plot(x, acc, 's', color='C3')
    ax0.annotate(f'ours: {label}', (x, acc), fontsize=7, color='C3')
  ax0.set(xscale='log', xlabel='throughput, img/sec/core (paper, TPUv3)',
          ylabel='ImageNet top-1 (%)', title='Accuracy vs throughput (Fig. 3)')
  ax0.legend(fontsize=8)
  shared = [m for m in (ours_speed or {}) if m in speed]
  if shared:
    ax1.loglog([speed[m] for m in shared], [ours_speed[m] for m in shared], 'o')
    for m in shared:
      ax1.annotate(m.replace('Mixer-', ''), (speed[m], ours_speed[m]), fontsize=7)
  ax1.set(xlabel='paper img/sec/core (TPUv3)', ylabel='ours img/sec (this machine)',
          title='Throughput ranking: ours vs paper')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_table1(args: argparse.Namespace) -> str:
  """Table 1; raises if any cell differs from the paper."""
  markdown, ok = tables.table1_markdown()
  _write(args.out, '1', markdown, {n: tables.table1_row(n) for n in tables.PAPER_VARIANTS})
  if not ok:
    raise SystemExit(markdown + '\n\nTable 1 does NOT match the paper.')
  return markdown


def run_throughput(args: argparse.Namespace) -> str:
  """Forward img/s of each variant, FLOPs, ranking; plus the Fig. 3-style plot."""
  results = []
  for name in [v for v in args.variants.split(',') if v]:
    r = tables.measure_throughput(name, batch=args.batch, dtype=args.dtype, iters=args.iters)
    print(f'{name}: {r.img_per_sec:.2f} img/s', flush=True)
    results.append(r)
  markdown = tables.throughput_markdown(results, machine=machine_description())
  _write(args.out, 'throughput', markdown, [dataclasses.asdict(r) for r in results])
  plot_fig3(os.path.join(args.out, 'fig3_throughput.png'),
            ours_speed={r.name: r.img_per_sec for r in results})
  return markdown


def _dataset_missing(name: str, *, data_dir: str | None, manual_dir: str | None) -> str | None:
  """Why tfds dataset `name` cannot be read offline, or None if it can."""
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # noqa: BLE001  (unknown name, missing builder code)
    return f'tfds dataset {name!r} unavailable ({e})'
  if builder.is_prepared() or (manual_dir and name.startswith('imagenet2012')):
    return None
  return (f'tfds dataset {name!r} is not prepared in {builder.data_dir_root} '
          f'(prepare it, or pass --data_dir / --manual_dir)')


def evaluate_rows(rows, *, checkpoint_dir: str | None, data_dir: str | None,
                  manual_dir: str | None, batch: int) -> dict[tuple[str, str], float | str]:
  """Top-1 (%) of every (row, metric) whose checkpoint and data exist, else why not."""
  from mixer_flax import evaluate

  cache: dict[tuple[str, str, int, str], float | str] = {}

  def top1(row: tables.AccuracyRow, metric: str) -> float | str:
    dataset, split, stem = tables.METRIC_DATA[metric]
    if not checkpoint_dir:
      return 'no --checkpoint_dir given'
    path = os.path.join(checkpoint_dir, row.key, f'{stem}.npz')
    if not os.path.exists(path) and stem == 'imagenet2012' and row.released:
      released = os.path.join(checkpoint_dir, row.released)
      path = released if os.path.exists(released) else path
    if not os.path.exists(path):
      return f'checkpoint {path} missing'
    missing = _dataset_missing(dataset, data_dir=data_dir, manual_dir=manual_dir)
    if missing:
      return missing
    key = (path, dataset, row.image_size, row.eval_mode)
    if key not in cache:
      model, params, arch = evaluate.load_model(path, image_size=row.image_size)
      config = evaluate.eval_config(
          dataset=dataset, split=split, image_size=row.image_size, model_name=arch['model_name'],
          eval_mode=row.eval_mode, batch=batch, data_dir=data_dir,
          num_classes=arch['num_classes'])
      config.manual_dir = manual_dir
      cache[key] = 100.0 * evaluate.evaluate_params(config, model, params, progress=True)['top1']
    return cache[key]

  ours: dict[tuple[str, str], float | str] = {}
  for row in rows:
    for metric in row.paper:
      if metric != 'Avg5':
        ours[(row.key, metric)] = top1(row, metric)
        continue
      parts = {m: top1(row, m) for m in tables.AVG5_METRICS}
      bad = [f'{m}: {v}' for m, v in parts.items() if isinstance(v, str)]
      if not checkpoint_dir:
        bad = ['no --checkpoint_dir given']
      ours[(row.key, metric)] = ('Avg-5 needs all five fine-tuned checkpoints; ' + '; '.join(bad)
                                 if bad else sum(parts.values()) / len(parts))
  return ours


def run_accuracy(args: argparse.Namespace) -> str:
  """Accuracy rows of Table 2/3 or the CIFAR-10 table, evaluated where data exists."""
  rows = [r for r in tables.ACCURACY_ROWS if r.table == args.table]
  ours = evaluate_rows(rows, checkpoint_dir=args.checkpoint_dir, data_dir=args.data_dir,
                       manual_dir=args.manual_dir, batch=args.eval_batch)
  markdown = tables.accuracy_markdown(rows, ours)
  _write(args.out, args.table, markdown, {f'{k}/{m}': v for (k, m), v in ours.items()})
  speed = {224: tables.PAPER_IMG_PER_SEC_CORE, 448: tables.PAPER_IMG_PER_SEC_CORE_448}
  top1 = {r.label: (speed[r.image_size][r.model], v) for r in rows for (k, m), v in ours.items()
          if k == r.key and m == 'ImNet' and isinstance(v, float)}
  plot_fig3(os.path.join(args.out, f'fig3_{args.table}.png'), ours_top1=top1)
  return markdown


def run_permutation(args: argparse.Namespace) -> str:
  """Section 3.4 on digits with the trainer."""
  import importlib.util

  from mixer_flax import permutation

  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'experiments', 'digits.py')
  spec = importlib.util.spec_from_file_location('digits_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  base = module.get_config(str(args.steps) if args.steps else None)
  workdir = os.path.join(args.out, 'permutation')
  results = permutation.run_experiment(base, workdir=workdir)
  if args.same_start:
    results.update(permutation.run_same_start(base, workdir=workdir))
  markdown = permutation.markdown(results, steps=base.total_steps, model_name=base.model_name)
  _write(args.out, 'permutation', markdown, results)
  return markdown


def main(argv: list[str] | None = None) -> str:
  """Runs one table, prints and writes it; returns the Markdown."""
  args = parse_args(argv)
  run = {'1': run_table1, 'throughput': run_throughput, 'permutation': run_permutation}.get(
      args.table, run_accuracy)
  markdown = run(args)
  print(markdown)
  return markdown


if __name__ == '__main__':
  main()
