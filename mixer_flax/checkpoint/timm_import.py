"""Import a timm `MlpMixer` state_dict (`.pth` or `.safetensors`) into the official layout.

The reverse of the export mapping (`timm/models/mlp_mixer.py` names):
`stem.proj.weight (C,3,P,P)` -> `stem/kernel (P,P,3,C)`, `blocks.i.norm1/norm2` ->
`MixerBlock_i/LayerNorm_0/1`, `blocks.i.mlp_tokens.fc1/fc2` ->
`MixerBlock_i/token_mixing/Dense_0/1` (Linear weights transposed), `mlp_channels`
likewise, `norm` -> `pre_head_layer_norm`, `head` -> `head`.

GELU caveat: timm's Mixer uses the exact (erf) GELU, ours the reference's tanh
approximation, so the same weights give logits that differ by ~1e-3 (about
2e-4 on a small random model); timm's published Mixer weights were converted
from the official JAX files, so evaluating them here is the reference setting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ['TIMM_SUFFIXES', 'from_timm_state_dict', 'is_timm_state_dict', 'read_state_dict']

TIMM_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors')

# Official module name -> timm's (the one name table; `timm.py` exports with it).
TIMM_SUBLAYERS = {'LayerNorm_0': 'norm1', 'LayerNorm_1': 'norm2',
                  'token_mixing/Dense_0': 'mlp_tokens.fc1',
                  'token_mixing/Dense_1': 'mlp_tokens.fc2',
                  'channel_mixing/Dense_0': 'mlp_channels.fc1',
                  'channel_mixing/Dense_1': 'mlp_channels.fc2'}
TIMM_TOP = {'stem': 'stem.proj', 'pre_head_layer_norm': 'norm', 'head': 'head'}
_SUBLAYERS = {timm: official for official, timm in TIMM_SUBLAYERS.items()}
_TOP = {timm: official for official, timm in TIMM_TOP.items()}
_BLOCK = re.compile(r'^blocks\.(\d+)\.(.+)\.(weight|bias)$')
_WRAPPERS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')


def is_timm_state_dict(keys) -> bool:
  """Whether `keys` look like a timm MlpMixer state_dict (`stem.proj.weight`, ...)."""
  return any(_strip(k) == 'stem.proj.weight' for k in keys)


def _strip(key: str) -> str:
  """Drops DataParallel / wrapper prefixes (`module.`, `model.`)."""
  for prefix in ('module.', 'model.'):
    if key.startswith(prefix):
      key = key[len(prefix):]
  return key


def _official_name(key: str) -> str | None:
  """The official name of timm key `key`, or None."""
  if m := _BLOCK.match(key):
    block, layer, leaf = m.groups()
    if layer not in _SUBLAYERS:
      return None
    if leaf == 'weight':
      leaf = 'scale' if layer.startswith('norm') else 'kernel'
    return f'MixerBlock_{block}/{_SUBLAYERS[layer]}/{leaf}'
  module, _, leaf = key.rpartition('.')
  if module not in _TOP or leaf not in ('weight', 'bias'):
    return None
  if leaf == 'weight':
    leaf = 'scale' if module == 'norm' else 'kernel'
  return f'{_TOP[module]}/{leaf}'


def from_timm_state_dict(state: Mapping[str, Any], *, source: str = '<state_dict>',
                         error=ValueError) -> dict[str, np.ndarray]:
  """Flat official-layout float32 params from a timm `MlpMixer` state_dict.

  Args:
    state: name -> array (numpy, or anything `np.asarray` takes).
    source: name used in error messages (the file).
    error: exception class raised for keys without an official counterpart.

  Returns:
    Flat `'/'`-joined dict (`stem/kernel`, `MixerBlock_0/...`, ...).
  """
  flat: dict[str, np.ndarray] = {}
  unknown = []
  for key, value in state.items():
    key = _strip(key)
    name = _official_name(key)
    if name is None:
      unknown.append(key)
      continue
    array = np.asarray(value, dtype=np.float32)
    if name == 'stem/kernel':
      if array.ndim != 4:
        raise error(f'{source}: {key!r} has shape {array.shape}; expected (C, 3, P, P).')
      array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    elif name.endswith('/kernel'):
      if array.ndim != 2:
        raise error(f'{source}: {key!r} has shape {array.shape}; expected a Linear weight '
                    '(out, in).')
      array = array.T
    flat[name] = np.ascontiguousarray(array)
  if unknown:
    raise error(f'{source}: state_dict keys {sorted(unknown)[:8]} have no MLP-Mixer counterpart '
                '(a timm MlpMixer has stem.proj, blocks.i.{norm1,mlp_tokens,norm2,mlp_channels}, '
                'norm, head; ResMLP/gMLP variants and stem norms are not Mixers).')
  return flat


def read_state_dict(path: str, *, error=ValueError) -> dict[str, np.ndarray]:
  """Reads a `.safetensors` (safetensors.numpy, no torch) or `.pth` (torch) state_dict."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return dict(load_file(path))
    except Exception as e:  # SafetensorError, OSError on a corrupt header
      raise error(f'{path}: not a readable .safetensors file ({e}).') from e
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise error(f'{path}: reading a PyTorch .pth needs torch (pip install torch), or convert it '
                'to .safetensors.') from e
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # UnpicklingError for non-tensor objects, zip errors
    raise error(f'{path}: not a readable PyTorch state_dict ({type(e).__name__}: {e}).') from e
  for wrapper in _WRAPPERS:  # Training checkpoints nest the weights.
    if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
      state = state[wrapper]
      break
  if not isinstance(state, Mapping):
    raise error(f'{path}: holds a {type(state).__name__}, not a state_dict.')
  return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, 'detach')}
