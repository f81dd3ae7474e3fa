"""Experiment files (`experiments/*.py`): loading them, and the one grammar of their argument.

An experiment file defines `get_config(arg=None)`; `--config=file.py:ARG` (absl) and
`load_experiment('file.py:ARG')` call it with ARG, which every file parses with `parse_arg`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import ml_collections


def parse_arg(arg: str | None, *, positional: tuple[str, ...] = (),
              words: dict[str, tuple[str, ...]] | None = None, **defaults: Any) -> dict[str, Any]:
  """Parses an experiment file's argument: the one grammar of `file.py:ARG`.

  ARG is a list of items separated by ',' or ':'. An item is `key=value`, a word of
  `words[key]` (e.g. `test` for `words={'test': ('test',)}`, which sets key to that
  word), or else the next of the `positional` keys. Values take the type of the key's
  default (ints stay ints). E.g. 'Mixer-B_16,cifar10,448,test' or 'patch_pixel:300'.

  Returns:
    `defaults` updated with the parsed values.
  """
  out, words, queue = dict(defaults), words or {}, list(positional)
  for item in [t.strip() for t in re.split('[,:]', arg or '') if t.strip()]:
    key, eq, value = item.partition('=')
    if not eq:
      key = next((k for k, allowed in words.items() if item in allowed), None)
      if key is None:
        if not queue:
          raise ValueError(f'Config argument {arg!r}: item {item!r} is not understood; '
                           f'expected {", ".join(positional) or "no positional values"}, '
                           f'words {words} or key=value.')
        key = queue.pop(0)
      value = item
    if key not in out:
      raise ValueError(f'Config argument {arg!r}: unknown key {key!r}; known: {sorted(out)}.')
    try:
      out[key] = type(out[key])(value) if isinstance(out[key], (int, float)) else value
    except ValueError as e:
      raise ValueError(f'Config argument {arg!r}: {key}={value!r} is not a number.') from e
  return out


def load_experiment(spec: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` of experiment file `spec` = 'file.py[:ARG]', as `--config=` loads it.

  A relative path that does not exist from the working directory is looked up from the
  repository root.
  """
  path, sep, arg = spec.partition('.py:')
  path = path + '.py' if sep else spec
  if not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, path)):
      raise FileNotFoundError(f'Experiment file {path} does not exist (spec {spec!r}).')
    path = os.path.join(root, path)
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f'experiment_{name}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if sep else module.get_config()
