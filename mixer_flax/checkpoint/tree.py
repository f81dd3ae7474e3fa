"""Parameter trees: nested dicts <-> flat '/'-joined keys (the `.npz` layout); CheckpointError."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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
