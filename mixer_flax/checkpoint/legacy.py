"""Parameter layouts: nested <-> flat '/'-joined keys, and older layouts renamed.

The released files use flat keys such as `MixerBlock_0/token_mixing/Dense_0/kernel`.
An older internal layout (`Mixer/encoderblock_N/...`, `Mixer/encoder_norm`,
`Mixer/embedding`) is renamed to the official one:

    embedding      -> stem
    encoderblock_N -> MixerBlock_N
    encoder_norm   -> pre_head_layer_norm
    (a leading 'Mixer/' scope is dropped; names inside a block are kept)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ['CheckpointError', 'flatten', 'unflatten', 'convert_legacy']

_TOP_LEVEL = re.compile(r'^(stem|MixerBlock_\d+|pre_head_layer_norm|head)$')
_LEGACY_RENAMES = ((re.compile(r'^embedding(?=/|$)'), 'stem'),
                   (re.compile(r'^encoderblock_(\d+)(?=/|$)'), r'MixerBlock_\1'),
                   (re.compile(r'^encoder_norm(?=/|$)'), 'pre_head_layer_norm'))

class CheckpointError(ValueError):
  """A checkpoint that cannot be read or does not fit the model."""


def flatten(params: Mapping[str, Any]) -> dict[str, Any]:
  """Nested dict `{'a': {'b': x}}` -> flat `{'a/b': x}`."""
  flat = {}
  for key, value in params.items():
    if isinstance(value, Mapping):
      for sub, leaf in flatten(value).items():
        flat[f'{key}/{sub}'] = leaf
    else:
      flat[key] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """Flat `{'a/b': x}` -> nested `{'a': {'b': x}}`."""
  nested: dict[str, Any] = {}
  for key, value in flat.items():
    *scopes, name = key.split('/')
    node = nested
    for scope in scopes:
      node = node.setdefault(scope, {})
    node[name] = value
  return nested


def convert_legacy(flat: dict[str, np.ndarray], *,
                   source: str = '<params>') -> dict[str, np.ndarray]:
  """Renames the older internal layout to the official one (see module doc).

  Official-layout input is returned unchanged. Raises `CheckpointError` when
  top-level names remain that neither layout knows.
  """
  out = {}
  for key, value in flat.items():
    new = key[len('Mixer/'):] if key.startswith('Mixer/') else key
    for pattern, repl in _LEGACY_RENAMES:
      new = pattern.sub(repl, new)
    out[new] = value
  if out.keys() != flat.keys():
    logging.info('%s: converted the older `Mixer/encoderblock_N` layout to the official names.',
                 source)
  unknown = sorted({k.split('/')[0] for k in out if not _TOP_LEVEL.match(k.split('/')[0])})
  if unknown:
    raise CheckpointError(
        f'{source}: unknown top-level parameter names {unknown}; expected stem, MixerBlock_N, '
        'pre_head_layer_norm, head (official layout) or Mixer/embedding, Mixer/encoderblock_N, '
        'Mixer/encoder_norm (older layout). Is this an MLP-Mixer checkpoint?')
  return out


