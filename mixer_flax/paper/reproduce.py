r"""One command per paper table (`scripts/reproduce_tables.py`): paper vs ours, Markdown.

Tables:
  1           Table 1 (architectures) measured from the model definitions; must match.
  throughput  forward images/sec of every variant on this machine, ranking vs the paper's
              img/sec/core (TPUv3), FLOPs per image (XLA cost analysis and analytic).
  3, 2, cifar10  accuracy rows evaluated from checkpoints (--checkpoint_dir) on prepared
              tfds data (--data_dir); rows without them say what is missing.
  sam         the same for the SAM / GSAM Mixers trained on ImageNet-1k (Table 1 of the
              GSAM paper, Zhuang et al. 2022; released files sam/, gsam/ under --checkpoint_dir).
  permutation paper section 3.4 on digits: original / patch+pixel / global pixel shuffle
              (+ a Fig. 4-style plot `<out>/fig4_permutation.png`).

Each run prints the Markdown and writes `<out>/table_<name>.md` (+ `.json`); throughput and
accuracy tables also write a plot in the spirit of the paper's Fig. 3 (`<out>/fig3_<name>.png`).

Examples: `scripts/reproduce_tables.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform

from mixer_flax import config as config_lib
from mixer_flax import entry, fileio
from mixer_flax.paper import accuracy, fig4, figures, table1, tables, throughput
from mixer_flax.paper.plots import plot_fig3
from mixer_flax.transfer import report as transfer_report

TABLES = ('1', 'throughput', '2', '3', 'cifar10', 'sam', 'permutation')


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
  p.add_argument('--transfer_results', nargs='*', default=[], metavar='RESULTS_JSONL',
                 help='accuracy tables: results.jsonl of `python -m mixer_flax.transfer` suites '
                      '(their --paper_row picks the row); give Avg-5 and VTAB-1k.')
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
  fileio.write_atomic(os.path.join(out, f'table_{name}.md'), markdown + '\n', what='a table')
  fileio.write_atomic(os.path.join(out, f'table_{name}.json'),
                      json.dumps(data, indent=2, default=str), what='a table')


def run_table1(args: argparse.Namespace) -> str:
  """Table 1; raises if any cell differs from the paper."""
  markdown, ok = table1.table1_markdown()
  _write(args.out, '1', markdown, {n: table1.table1_row(n) for n in tables.PAPER_VARIANTS})
  if not ok:
    raise SystemExit(markdown + '\n\nTable 1 does NOT match the paper.')
  return markdown


def run_throughput(args: argparse.Namespace) -> str:
  """Forward img/s of each variant, FLOPs, ranking; plus the Fig. 3-style plot."""
  results = []
  for name in [v for v in args.variants.split(',') if v]:
    r = throughput.measure_throughput(name, batch=args.batch, dtype=args.dtype, iters=args.iters)
    print(f'{name}: {r.img_per_sec:.2f} img/s', flush=True)
    results.append(r)
  markdown = throughput.throughput_markdown(results, machine=machine_description())
  _write(args.out, 'throughput', markdown, [dataclasses.asdict(r) for r in results])
  plot_fig3(os.path.join(args.out, 'fig3_throughput.png'),
            ours_speed={r.name: r.img_per_sec for r in results})
  return markdown


def run_accuracy(args: argparse.Namespace) -> str:
  """Accuracy rows of Table 2/3 or the CIFAR-10 table, evaluated where data exists."""
  rows = [r for r in tables.ACCURACY_ROWS if r.table == args.table]
  ours = accuracy.evaluate_rows(rows, checkpoint_dir=args.checkpoint_dir, data_dir=args.data_dir,
                       manual_dir=args.manual_dir, batch=args.eval_batch)
  suites = transfer_report.suite_results(args.transfer_results)
  ours.update({k: v for k, v in suites.items() if k in ours})
  markdown = accuracy.accuracy_markdown(rows, ours)
  _write(args.out, args.table, markdown, {f'{k}/{m}': v for (k, m), v in ours.items()})
  speed = {224: tables.PAPER_IMG_PER_SEC_CORE, 448: tables.PAPER_IMG_PER_SEC_CORE_448}
  top1 = {r.label: (speed[r.image_size][r.model], v) for r in rows for (k, m), v in ours.items()
          if k == r.key and m == 'ImNet' and isinstance(v, float) and r.model in speed[224]}
  plot_fig3(os.path.join(args.out, f'fig3_{args.table}.png'), ours_top1=top1)
  return markdown


def run_permutation(args: argparse.Namespace) -> str:
  """Section 3.4 on digits with the trainer."""
  from mixer_flax.paper import permutation_experiment as permutation

  base = config_lib.load_experiment('experiments/digits.py'
                                    + (f':{args.steps}' if args.steps else ''))
  workdir = os.path.join(args.out, 'permutation')
  results = permutation.run_experiment(base, workdir=workdir)
  if args.same_start:
    results.update(permutation.run_same_start(base, workdir=workdir))
  markdown = permutation.markdown(results, steps=base.total_steps, model_name=base.model_name)
  _write(args.out, 'permutation', markdown, {**results, 'steps': base.total_steps})
  figures.save(fig4.permutation_figure(os.path.join(args.out, 'table_permutation.json')),
               os.path.join(args.out, 'fig4_permutation.png'))
  return markdown


@entry.command
def main(argv: list[str] | None = None) -> str:
  """Runs one table, prints and writes it; returns the Markdown."""
  args = parse_args(argv)
  run = {'1': run_table1, 'throughput': run_throughput, 'permutation': run_permutation}.get(
      args.table, run_accuracy)
  markdown = run(args)
  print(markdown)
  return markdown
