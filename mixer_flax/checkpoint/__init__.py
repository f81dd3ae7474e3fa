"""MLP-Mixer checkpoints: official `.npz` I/O, older layouts, timm files, fine-tuning, loading.

`info.py` (describe a checkpoint, infer its architecture), `adapt.py` (token-grid
adaptation), `timm.py` (PyTorch export), `timm_import.py` (PyTorch import), `portable.py`
(jax.export artifact) and `metadata.py` (class names and preprocessing next to a checkpoint)
are imported from their modules. The names below are loaded at first use, so the command
lines of `cli.py` answer `--help` before JAX starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from mixer_flax.checkpoint.finetune import finetune_overrides, load_pretrained, restore_params
  from mixer_flax.checkpoint.formats import load_params
  from mixer_flax.checkpoint.legacy import convert_legacy
  from mixer_flax.checkpoint.loader import load_model
  from mixer_flax.checkpoint.npz import load_npz, save_npz
  from mixer_flax.checkpoint.tree import CheckpointError, flatten, unflatten

_MODULES = {'finetune_overrides': 'finetune', 'load_pretrained': 'finetune',
            'restore_params': 'finetune', 'load_params': 'formats', 'convert_legacy': 'legacy',
            'load_model': 'loader', 'load_npz': 'npz', 'save_npz': 'npz',
            'CheckpointError': 'tree', 'flatten': 'tree', 'unflatten': 'tree'}

__all__ = ['CheckpointError', 'load_npz', 'save_npz', 'flatten', 'unflatten', 'convert_legacy',
           'load_params', 'load_pretrained', 'restore_params', 'finetune_overrides', 'load_model']


def __getattr__(name: str) -> Any:
  if name not in _MODULES:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  return getattr(importlib.import_module(f'{__name__}.{_MODULES[name]}'), name)
