"""A checkpoint's hidden units as images, in the order of the paper's Fig. 5 and Appendix D.

Token mixing: hidden unit j of block b is column j of `MixerBlock_b/token_mixing/Dense_0/kernel`
`(S, D_S)`, its S weights over the `(H/P, W/P)` token grid (tokens are row-major). Appendix D:
"we sort all hidden units according to a heuristic that tries to show low frequency filters
first. For each unit, we also try to identify the unit that is closest to its inverse";
`pair_units` is our version of both (its docstring states the rules exactly).

Stem: output channel c of `stem/kernel` `(P, P, 3, C)` is a PxP RGB filter (Appendix D, Fig. 7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixer_flax.checkpoint.tree import CheckpointError, flatten

STEM_KEY = 'stem/kernel'


def token_mixing_key(block: int) -> str:
  """The key of block `block`'s first token-mixing kernel `(S, D_S)`."""
  return f'MixerBlock_{block}/token_mixing/Dense_0/kernel'


def num_blocks(flat: Mapping[str, Any]) -> int:
  """The number of `MixerBlock_i` scopes holding a token-mixing kernel (0, 1, ... in a row)."""
  n = 0
  while token_mixing_key(n) in flat:
    n += 1
  return n


def require(flat: Mapping[str, Any], key: str, *, source: str) -> np.ndarray:
  """`flat[key]` as float32, or a `CheckpointError` naming the file and the key."""
  if key not in flat:
    raise CheckpointError(f'{source}: parameter {key!r} is missing; figures need a Mixer '
                          'checkpoint in the official layout (scripts/inspect_checkpoint.py '
                          '--keys lists what the file holds).')
  return np.asarray(flat[key], np.float32)


def token_grid(num_tokens: int, grid: tuple[int, int] | None = None) -> tuple[int, int]:
  """The `(rows, cols)` token grid: `grid` if given (checked), else the square one.

  Raises:
    ValueError: `grid` does not hold `num_tokens` tokens, or none was given and
      `num_tokens` is not a square.
  """
  if grid is not None:
    rows, cols = grid
    if rows * cols != num_tokens:
      raise ValueError(f'--token_grid {rows},{cols} holds {rows * cols} tokens but the '
                       f'checkpoint has {num_tokens}; give ROWS,COLS = (H/P),(W/P).')
    return rows, cols
  side = math.isqrt(num_tokens)
  if side * side != num_tokens:
    raise ValueError(f'The checkpoint has {num_tokens} tokens, not a square grid; give '
                     '--token_grid ROWS,COLS = (H/P),(W/P).')
  return side, side


def filter_frequency(images: np.ndarray) -> np.ndarray:
  """Spectral centroid of each filter: the power-weighted mean radial spatial frequency.

  Args:
    images: `(N, R, C)` or `(N, R, C, K)` (K colour channels: their power spectra add).

  Returns:
    `(N,)`, cycles per grid cell in [0, 0.71]: `sum_f |f| |F(f)|^2 / sum_f |F(f)|^2` over the
    2-D DFT `F` (DC included, so a constant filter has 0); an all-zero filter gets 0. A unit
    and its negative have the same spectrum, hence the same frequency.
  """
  x = np.asarray(images, np.float64)
  if x.ndim == 3:
    x = x[..., None]
  power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(-1)
  fy = np.fft.fftfreq(x.shape[1])[:, None]
  fx = np.fft.fftfreq(x.shape[2])[None, :]
  radius = np.sqrt(fy ** 2 + fx ** 2)
  total = power.sum((1, 2))
  weighted = (power * radius).sum((1, 2))
  return np.divide(weighted, total, out=np.zeros_like(total), where=total > 0)


def pair_units(units: np.ndarray) -> list[tuple[int, ...]]:
  """Pairs each unit with the unit closest to its inverse, low frequencies first.

  Rules (our reading of Appendix D; the paper gives no formula):
  1. Order: units by ascending `filter_frequency` (ties: lower index first).
  2. Walk that order; each unit u not yet placed opens a pair and is followed by the
     not-yet-placed unit v closest to its inverse: the smallest `||u/|u| + v/|v|||`, i.e.
     the smallest cosine similarity `cos(u, v)` (ties: lower index). With an odd count the
     last unit stands alone.
  So pairs come out sorted by their first unit's frequency (the caption's "pairs are sorted by
  filter frequency"), and an exact opposite `v = -a u` (a > 0), if still unplaced, is chosen.

  Args:
    units: `(N, R, C)` (or `(N, R, C, K)`): one image per unit; compared flattened.

  Returns:
    `[(u, v), ...]` unit indices (a last `(u,)` when N is odd); every index once.
  """
  flat = np.asarray(units, np.float64).reshape(len(units), -1)
  norms = np.linalg.norm(flat, axis=1, keepdims=True)
  unit_vectors = flat / np.where(norms > 0, norms, 1.0)
  cosine = unit_vectors @ unit_vectors.T
  order = np.argsort(filter_frequency(units), kind='stable')
  placed = np.zeros(len(units), bool)
  pairs: list[tuple[int, ...]] = []
  for u in order:
    if placed[u]:
      continue
    placed[u] = True
    candidates = np.where(placed, np.inf, cosine[u])
    if np.isinf(candidates).all():
      pairs.append((int(u),))
      break
    v = int(np.argmin(candidates))
    placed[v] = True
    pairs.append((int(u), v))
  return pairs


def token_mixing_units(params: Mapping[str, Any], *, block: int,
                       grid: tuple[int, int] | None = None,
                       source: str = '<params>') -> np.ndarray:
  """Block `block`'s token-mixing hidden units as images `(D_S, rows, cols)`.

  Unit j is column j of the `(S, D_S)` kernel reshaped row-major to the token grid.
  """
  flat = flatten(params)
  kernel = require(flat, token_mixing_key(block), source=source)
  rows, cols = token_grid(kernel.shape[0], grid)
  return kernel.T.reshape(kernel.shape[1], rows, cols)


def stem_filters(params: Mapping[str, Any], *, source: str = '<params>') -> np.ndarray:
  """The stem's output channels as `(C, P, P, 3)` filters (raw weights)."""
  kernel = require(flatten(params), STEM_KEY, source=source)
  if kernel.ndim != 4:
    raise CheckpointError(f'{source}: {STEM_KEY!r} has shape {kernel.shape}; expected '
                          '(P, P, 3, C).')
  return np.moveaxis(kernel, -1, 0)


def stem_display(filters: np.ndarray) -> np.ndarray:
  """Each filter mapped to RGB in [0, 1] with zero at grey: `0.5 + k / (2 max|k|)`.

  One scale per filter over its three channels, so the sign and the colour balance of
  every weight are kept; an all-zero filter is plain grey.
  """
  peak = np.abs(filters).reshape(len(filters), -1).max(1)
  peak = np.where(peak > 0, peak, 1.0)[:, None, None, None]
  return 0.5 + filters / (2.0 * peak)


def stem_order(filters: np.ndarray) -> np.ndarray:
  """Filter indices by ascending `filter_frequency` over the PxP grid (RGB power summed)."""
  return np.argsort(filter_frequency(filters), kind='stable')


def display_order(pairs: Sequence[tuple[int, ...]]) -> list[int]:
  """The pairs flattened: u0, v0, u1, v1, ... (the reading order of the figure)."""
  return [i for pair in pairs for i in pair]
