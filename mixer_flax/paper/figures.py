r"""The paper's weight figures of any checkpoint as PNGs (`scripts/figures.py`).

* `fig5_token_mixing.png` (Fig. 5 / Appendix D Fig. 6): hidden units of token-mixing MLPs,
  one column group per block, each unit its weights over the token grid; units in the
  order of `units.pair_units` (low frequency first, each unit followed by the unit closest to
  its inverse), read row by row, so every pair sits side by side.
* `stem_filters.png` (Appendix D Fig. 7): stem filters as PxP RGB images (`units.stem_display`),
  lowest frequency first.
* `fig4_permutation.png` (Fig. 4) from `scripts/reproduce_tables.py --table permutation`'s
  `table_permutation.json` (`paper/fig4.py`).

Colours: a token-mixing unit is drawn in grey levels with its own symmetric range
`[-max|w|, max|w|]` (black negative, mid-grey zero, white positive), so a unit and its
negative are photographic negatives of each other.

Example:
  python scripts/figures.py --checkpoint workdirs/digits/final.npz --out figures
"""

from __future__ import annotations

import argparse
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mixer_flax import entry, fileio
from mixer_flax.checkpoint.tree import flatten
from mixer_flax.paper import units

PANEL_INCHES = 0.45  # One small image; ~45 px at the default 100 dpi.

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn (`--help` answers at once)
  from matplotlib.figure import Figure


def resolve_blocks(blocks: Sequence[int], *, count: int, source: str) -> list[int]:
  """Block indices, negative ones from the end (-1: the last block), checked."""
  resolved = []
  for b in blocks:
    i = b + count if b < 0 else b
    if not 0 <= i < count:
      raise ValueError(f'--blocks: block {b} does not exist; {source} has {count} Mixer blocks '
                       f'(0..{count - 1}; -1 is the last).')
    resolved.append(i)
  return resolved


def _how_many(shown: int, total: int) -> str:
  return f'all {total}' if shown == total else f'first {shown} of {total}'


def _grid_figure(*, rows: int, groups: int, columns: int, title: str,
                 head: float = 0.75) -> tuple[Figure, Any]:
  """A figure of `groups` panel grids `rows x columns` side by side, a spacer between.

  `head`: inches above the panels (title, block names).
  """
  width = groups * columns + (groups - 1) * 0.6
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top,redefined-outer-name

  fig = Figure(figsize=(PANEL_INCHES * width + 0.4, PANEL_INCHES * rows + head + 0.25))
  ratios = ([1.0] * columns + [0.6]) * (groups - 1) + [1.0] * columns
  gs = fig.add_gridspec(rows, len(ratios), width_ratios=ratios, wspace=0.1, hspace=0.1,
                        left=0.2 / fig.get_figwidth(), right=1 - 0.2 / fig.get_figwidth(),
                        bottom=0.1 / fig.get_figheight(), top=1 - head / fig.get_figheight())
  fig.suptitle(title, fontsize=9, y=1 - 0.12 / fig.get_figheight(), va='top')
  return fig, gs


def token_mixing_figure(params: Mapping[str, Any], *, blocks: Sequence[int] = (0, 1, 2),
                        max_units: int = 64, columns: int = 8,
                        grid: tuple[int, int] | None = None,
                        source: str = '<params>') -> Figure:
  """Fig. 5: the first `max_units` hidden units (0: all) of each block in `blocks`, paired.

  Each panel is one `imshow` of the unit's raw weights `(rows, cols)`, colour limits
  `(-max|w|, max|w|)`, labelled `MixerBlock_b/token_mixing/Dense_0/kernel[:, j]`.
  """
  if columns < 2 or columns % 2:
    raise ValueError(f'--columns {columns}: must be even (pairs sit side by side).')
  flat = flatten(params)
  count = units.num_blocks(flat)
  if not count:
    units.require(flat, units.token_mixing_key(0), source=source)
  chosen = resolve_blocks(blocks, count=count, source=source)
  images = {b: units.token_mixing_units(flat, block=b, grid=grid, source=source) for b in chosen}
  d_s, rows_t, cols_t = images[chosen[0]].shape
  shown = d_s if max_units <= 0 else min(max_units, d_s)
  rows = math.ceil(shown / columns)
  fig, gs = _grid_figure(rows=rows, groups=len(chosen), columns=columns, title=(
      f'Token-mixing hidden units ({_how_many(shown, d_s)} per block, paired with their closest '
      f'inverse, low frequency first), {rows_t}x{cols_t} token grid'))
  for g, b in enumerate(chosen):
    start = g * (columns + 1)
    order = units.display_order(units.pair_units(images[b]))[:shown]
    for pos, j in enumerate(order):
      ax = fig.add_subplot(gs[pos // columns, start + pos % columns])
      w = images[b][j]
      peak = float(np.abs(w).max()) or 1.0
      ax.imshow(w, cmap='gray', vmin=-peak, vmax=peak, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_label(f'{units.token_mixing_key(b)}[:, {j}]')
    box = gs[0, start:start + columns].get_position(fig)
    fig.text((box.x0 + box.x1) / 2, box.y1 + 0.08 / fig.get_figheight(),
             f'MixerBlock_{b}', ha='center', va='bottom', fontsize=8)
  return fig


def stem_figure(params: Mapping[str, Any], *, max_filters: int = 64, columns: int = 16,
                source: str = '<params>') -> Figure:
  """Fig. 7: the first `max_filters` stem filters (0: all) by ascending frequency, as RGB.

  Each panel shows `units.stem_display` of one channel `(P, P, 3)`, labelled
  `stem/kernel[..., c]`.
  """
  filters = units.stem_filters(params, source=source)
  order = units.stem_order(filters)
  shown = len(order) if max_filters <= 0 else min(max_filters, len(order))
  cols = min(columns, shown)
  rows = math.ceil(shown / cols)
  patch = filters.shape[1]
  fig, gs = _grid_figure(rows=rows, groups=1, columns=cols, head=0.45, title=(
      f'Stem filters {patch}x{patch} RGB ({_how_many(shown, len(order))}, low frequency first; '
      '0.5 + w / (2 max|w|) per filter)'))
  display = units.stem_display(filters)
  for pos, c in enumerate(order[:shown]):
    ax = fig.add_subplot(gs[pos // cols, pos % cols])
    ax.imshow(display[c], interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_label(f'{units.STEM_KEY}[..., {c}]')
  return fig


def save(fig: Figure, path: str, *, dpi: int = 100) -> str:
  """Writes `fig` as a PNG (Agg; no timestamp in the file, so reruns are byte-identical).

  Rendered in memory, then written whole (`fileio.write_atomic`): no partial PNG.
  """
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=dpi, metadata={'Software': None})
  fileio.write_atomic(path, buffer.getvalue(), what='the figure')
  return path


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(v) for v in text.split(',') if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--checkpoint', help='.npz or timm .safetensors/.pth (local, gs://, https://).')
  p.add_argument('--sha256', default=None, help='expected SHA-256 of the checkpoint.')
  p.add_argument('--out', required=True, help='output directory for the PNGs.')
  p.add_argument('--blocks', type=_ints, default=(0, 1, 2),
                 help='token-mixing blocks of Fig. 5 (default 0,1,2: the first three, as the '
                      'paper; -1 is the last).')
  p.add_argument('--units', type=int, default=64, help='hidden units per block (0: all).')
  p.add_argument('--columns', type=int, default=8, help='Fig. 5 panels per row (even).')
  p.add_argument('--stem_filters', type=int, default=64, help='stem filters shown (0: all).')
  p.add_argument('--token_grid', type=_ints, default=None, metavar='ROWS,COLS',
                 help='token grid (H/P),(W/P) of a non-square checkpoint.')
  p.add_argument('--permutation_results', default=None, metavar='JSON',
                 help="Fig. 4 from `reproduce_tables.py --table permutation`'s "
                      'table_permutation.json (runs found beside it are drawn too).')
  p.add_argument('--dpi', type=int, default=100)
  args = p.parse_args(argv)
  if not (args.checkpoint or args.permutation_results):
    p.error('give --checkpoint and/or --permutation_results.')
  if args.token_grid is not None and len(args.token_grid) != 2:
    p.error(f'--token_grid takes ROWS,COLS, got {args.token_grid}.')
  return args


def write_figures(args: argparse.Namespace) -> list[str]:
  """Draws and writes every figure the flags ask for; returns the paths."""
  from mixer_flax import checkpoint
  from mixer_flax.paper import fig4

  written = []
  if args.checkpoint:
    params = checkpoint.load_params(args.checkpoint, sha256=args.sha256)
    written.append(save(token_mixing_figure(
        params, blocks=args.blocks, max_units=args.units, columns=args.columns,
        grid=args.token_grid, source=args.checkpoint),
        os.path.join(args.out, 'fig5_token_mixing.png'), dpi=args.dpi))
    written.append(save(stem_figure(params, max_filters=args.stem_filters,
                                    source=args.checkpoint),
                        os.path.join(args.out, 'stem_filters.png'), dpi=args.dpi))
  if args.permutation_results:
    written.append(save(fig4.permutation_figure(args.permutation_results),
                        os.path.join(args.out, 'fig4_permutation.png'), dpi=args.dpi))
  return written


@entry.command
def main(argv: list[str] | None = None) -> int:
  """`scripts/figures.py`; returns the exit status (errors: one line, `entry.command`)."""
  args = parse_args(argv)
  for path in write_figures(args):
    print(f'wrote {path}')
  return 0
