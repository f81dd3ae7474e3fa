"""Older parameter layouts converted to the released one.

Two generations of files predate the released layout (`stem`, `MixerBlock_N`,
`pre_head_layer_norm`, `head`; see `mixer_flax.models`):

* renamed scopes: `Mixer/` prefix (dropped), `embedding` -> `stem`,
  `encoderblock_N` -> `MixerBlock_N`, `encoder_norm` -> `pre_head_layer_norm`;
* pre-linen files (big_vision's Mixer `load`): besides the names above, each
  block's MLPs are single modules `token_mixing_phase_0` / `channel_mixing_phase_0`
  with leaves `kernel1, bias1, kernel2, bias2` (-> `Dense_0/kernel`, `Dense_0/bias`,
  `Dense_1/kernel`, `Dense_1/bias` under `token_mixing` / `channel_mixing`),
  arrays may carry extra unit dimensions, and submodules were numbered across
  classes (`LayerNorm_0`, `LayerNorm_2`), which flax's `convert_pre_linen`
  renumbers per class in natural order (`LayerNorm_0`, `LayerNorm_1`).

`convert_legacy` does all of it and leaves official-layout input unchanged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixer_flax.checkpoint.tree import CheckpointError, flatten, unflatten

__all__ = ['convert_legacy', 'convert_pre_linen', 'is_legacy']

_TOP_LEVEL = re.compile(r'^(stem|MixerBlock_\d+|pre_head_layer_norm|head)$')
_RENAMES = ((re.compile(r'^embedding(?=/|$)'), 'stem'),
            (re.compile(r'^encoderblock_(\d+)(?=/|$)'), r'MixerBlock_\1'),
            (re.compile(r'^encoder_norm(?=/|$)'), 'pre_head_layer_norm'))
_LEGACY_TOP = re.compile(r'^(Mixer|embedding|encoderblock_\d+|encoder_norm)$')
_PHASES = {'token_mixing_phase_0': 'token_mixing', 'channel_mixing_phase_0': 'channel_mixing'}
_PHASE_LEAVES = {'kernel1': 'Dense_0/kernel', 'bias1': 'Dense_0/bias',
                 'kernel2': 'Dense_1/kernel', 'bias2': 'Dense_1/bias'}
_MODULE_NUMBER = re.compile(r'^(.*)_(\d+)$')


def _natural_key(name: str) -> list:
  """'encoderblock_10' after 'encoderblock_9' (digit runs compare as numbers)."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def convert_pre_linen(tree: Mapping[str, Any]) -> dict[str, Any]:
  """Renumbers pre-linen submodules per class: `{A_0, B_1, A_2}` -> `{A_0, B_0, A_1}`.

  The same rule as `flax.training.checkpoints.convert_pre_linen` (natural sort
  order, one counter per module class), without importing flax.training
  (which imports TensorFlow). Leaves (arrays) are returned as they are.
  """
  out: dict[str, Any] = {}
  counts: dict[str, int] = {}
  for name in sorted(tree, key=_natural_key):
    value = tree[name]
    if (m := _MODULE_NUMBER.match(name)) and isinstance(value, Mapping):
      counts[m.group(1)] = counts.get(m.group(1), -1) + 1
      name = f'{m.group(1)}_{counts[m.group(1)]}'
    out[name] = convert_pre_linen(value) if isinstance(value, Mapping) else value
  return out


def is_legacy(flat: Mapping[str, Any]) -> bool:
  """Whether any key uses an older layout's names (see module doc)."""
  return any(_LEGACY_TOP.match(k.split('/')[0]) or '_phase_' in k for k in flat)


def _rank(key: str) -> int:
  """Rank of the official parameter `key`: stem kernel 4, other kernels 2, else 1."""
  if key == 'stem/kernel':
    return 4
  return 2 if key.endswith('/kernel') else 1


def _squeeze_to_rank(value: np.ndarray, rank: int, *, key: str, source: str) -> np.ndarray:
  """Drops unit axes (leading first) until `value` has `rank` axes."""
  shape = list(np.shape(value))
  while len(shape) > rank and 1 in shape:
    shape.remove(1)
  if len(shape) != rank:
    raise CheckpointError(f'{source}: parameter {key!r} has shape {tuple(np.shape(value))}; '
                          f'expected {rank} axes (after dropping unit axes). Is this an MLP-Mixer '
                          'checkpoint?')
  return np.reshape(value, shape)


def _expand_phases(flat: dict[str, Any], source: str) -> dict[str, Any]:
  """`.../token_mixing_phase_0/kernel1` -> `.../token_mixing/Dense_0/kernel` (etc.)."""
  out = {}
  for key, value in flat.items():
    parts = key.split('/')
    if len(parts) >= 2 and parts[-2] in _PHASES:
      if parts[-1] not in _PHASE_LEAVES:
        raise CheckpointError(f'{source}: unknown parameter {key!r} in a pre-linen MLP; expected '
                              f'{sorted(_PHASE_LEAVES)}.')
      key = '/'.join(parts[:-2] + [_PHASES[parts[-2]], _PHASE_LEAVES[parts[-1]]])
    out[key] = value
  return out


def convert_legacy(flat: dict[str, Any], *, source: str = '<params>') -> dict[str, Any]:
  """Converts flat '/'-joined params of any known layout to the official layout.

  Official-layout input is returned unchanged (same dict contents). Raises
  `CheckpointError` naming the file when top-level names remain that no layout
  knows, or a parameter cannot be brought to its official rank.
  """
  out = flat
  if is_legacy(flat):
    tree = convert_pre_linen(unflatten(flat))
    if isinstance(tree.get('Mixer'), Mapping):  # Drop the scope; keep anything beside it.
      inner = tree.pop('Mixer')
      clash = sorted(set(inner) & set(tree))
      if clash:
        raise CheckpointError(f'{source}: {clash} exist both inside and outside `Mixer/`.')
      tree.update(inner)
    renamed = {}
    for key, value in _expand_phases(flatten(tree), source).items():
      for pattern, repl in _RENAMES:
        key = pattern.sub(repl, key)
      renamed[key] = value
    out = {k: _squeeze_to_rank(v, _rank(k), key=k, source=source) if np.ndim(v) > _rank(k)
           else v for k, v in renamed.items()}
    logging.info('%s: converted an older Mixer layout (Mixer/encoderblock_N, *_phase_0, '
                 'pre-linen numbering) to the official names.', source)
  unknown = sorted({k.split('/')[0] for k in out if not _TOP_LEVEL.match(k.split('/')[0])})
  if unknown:
    raise CheckpointError(
        f'{source}: unknown top-level parameter names {unknown}; expected stem, MixerBlock_N, '
        'pre_head_layer_norm, head (official layout) or Mixer/embedding, Mixer/encoderblock_N, '
        'Mixer/encoder_norm (older layouts). Is this an MLP-Mixer checkpoint?')
  return out
