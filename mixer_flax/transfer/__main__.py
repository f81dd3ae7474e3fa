r"""`python -m mixer_flax.transfer`: the paper's transfer columns from one checkpoint.

  python -m mixer_flax.transfer --suite=vtab1k --pretrained=imagenet21k/Mixer-B_16.npz \
      --workdir=transfer/i21k_B_16/vtab1k --data_dir=~/tfds [--tasks=dtd,svhn] [--check]
  python -m mixer_flax.transfer --suite=avg5 --pretrained=imagenet21k/Mixer-B_16.npz \
      --workdir=transfer/i21k_B_16/avg5 --data_dir=~/tfds --paper_row=i21k_B_16

--check lists prepared and missing datasets and exits. Otherwise every dataset is checked
first (a missing one stops the run before any training, naming the `tfds build` command),
then each task runs as described in mixer_flax/transfer/suite.py; rerunning the same
command resumes. The table (per task, group means, mean next to the paper's number for
--paper_row) is printed and written to DIR/table.md.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Sequence

from mixer_flax import backends, entry, fileio
from mixer_flax.paper import tables
from mixer_flax.transfer import avg5, tasks, vtab

SUITES = ('vtab1k', 'avg5')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(prog='python -m mixer_flax.transfer', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument(entry.VERBOSE_FLAG, action='store_true', help=entry.VERBOSE_HELP)
  p.add_argument('--suite', required=True, choices=SUITES)
  p.add_argument('--pretrained', help='pre-trained .npz (local or gs://).')
  p.add_argument('--workdir', help='local suite directory (one trainer workdir per run inside).')
  p.add_argument('--tasks', default='', help='comma-separated subset (default: all).')
  p.add_argument('--check', action='store_true', help='only list prepared/missing datasets.')
  p.add_argument('--data_dir', default=None, help='tfds data_dir of the prepared datasets.')
  p.add_argument('--lrs', default=None,
                 help='learning-rate grid (default: the paper\'s, vtab1k 0.003,0.01,0.03; '
                      'avg5 0.003,0.01,0.03,0.06); one value skips the val sweep.')
  p.add_argument('--resolutions', default='224,448',
                 help='vtab1k: fine-tuning sizes for small,large images (BiT-HyperRule).')
  p.add_argument('--image_size', type=int, default=224, help='avg5: fine-tuning resolution.')
  p.add_argument('--paper_row', default=None,
                 help='key of the paper row of this checkpoint (e.g. i21k_L_16_448).')
  p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='override a trainer config key on every run, e.g. --set batch=256.')
  return p.parse_args(argv)


def parse_overrides(items: Sequence[str]) -> dict:
  """['a.b=1', 'c=x'] -> {'a.b': 1, 'c': 'x'} (Python literals, else strings)."""
  out = {}
  for item in items:
    key, sep, value = item.partition('=')
    if not sep or not key:
      raise ValueError(f'--set {item!r}: expected KEY=VALUE.')
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def _names(args: argparse.Namespace) -> list[str]:
  known = tasks.names(args.suite)
  requested = [t for t in args.tasks.split(',') if t] or known
  message = tasks.unknown_tasks_message(requested, known, args.suite)
  if message:
    raise ValueError(message)
  return requested


@entry.command
def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command; returns the exit status."""
  backends.apply_xla_flags()  # before JAX starts a backend (XLA reads its flags then)
  args = parse_args(argv)
  names = _names(args)
  data_dir = os.path.expanduser(args.data_dir) if args.data_dir else None
  datasets = tasks.datasets(args.suite, names)
  if args.check:  # tfds alone: answers in seconds
    from mixer_flax.transfer import check  # pylint: disable=g-import-not-at-top
    statuses = check.check_datasets(datasets, data_dir)
    print(check.status_report(statuses, data_dir))
    message = check.missing_message(statuses, data_dir)
    if message:
      print('\n' + message)
    return 0 if message is None else 1
  if not args.pretrained or not args.workdir:
    raise ValueError('--pretrained and --workdir are required (unless --check).')
  rows_known = sorted({r.key for r in tables.ACCURACY_ROWS})
  if args.paper_row and args.paper_row not in rows_known:
    raise ValueError(f'--paper_row={args.paper_row!r} is not a paper row; use one of '
                     f'{", ".join(rows_known)}.')
  lrs = ([float(x) for x in args.lrs.split(',')] if args.lrs
         else list(vtab.VTAB_LRS if args.suite == 'vtab1k' else avg5.AVG5_LRS))
  resolutions = tuple(int(x) for x in args.resolutions.split(','))
  if not lrs or len(resolutions) != 2:
    raise ValueError('--lrs needs at least one value and --resolutions two (small,large).')
  overrides = parse_overrides(args.set)
  entry.import_tensorflow()
  from mixer_flax.transfer import report, suite  # pylint: disable=g-import-not-at-top

  suite_tasks = tasks.build(args.suite, names, pretrained=args.pretrained, data_dir=data_dir,
                            resolutions=resolutions, image_size=args.image_size)
  extra = dict(suite=args.suite, paper_row=args.paper_row)
  rows = suite.run_suite(suite_tasks, directory=args.workdir, lrs=lrs, data_dir=data_dir,
                         overrides=overrides, extra=extra)
  groups = vtab.GROUPS if args.suite == 'vtab1k' else ('avg5',)
  table = report.markdown(rows, suite=args.suite, groups=groups,
                          expected=len(tasks.names(args.suite)), paper_row=args.paper_row,
                          paper=tables.paper_number(report.SUITE_METRIC[args.suite],
                                                    args.paper_row))
  fileio.write_atomic(os.path.join(args.workdir, 'table.md'), table + '\n', what='the table')
  print(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
