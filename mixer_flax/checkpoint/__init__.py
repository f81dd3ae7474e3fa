"""MLP-Mixer checkpoints: official `.npz` I/O, older layouts, timm files, fine-tuning, loading.

`info.py` (describe a checkpoint, infer its architecture), `adapt.py` (token-grid
adaptation), `timm.py` (PyTorch export), `timm_import.py` (PyTorch import) and
`portable.py` (jax.export artifact) are imported from their modules.
"""

from mixer_flax.checkpoint.finetune import finetune_overrides, load_pretrained, restore_params
from mixer_flax.checkpoint.formats import load_params
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.loader import load_model
from mixer_flax.checkpoint.npz import load_npz, save_npz
from mixer_flax.checkpoint.tree import CheckpointError, flatten, unflatten

__all__ = ['CheckpointError', 'load_npz', 'save_npz', 'flatten', 'unflatten', 'convert_legacy',
           'load_params', 'load_pretrained', 'restore_params', 'finetune_overrides', 'load_model']
