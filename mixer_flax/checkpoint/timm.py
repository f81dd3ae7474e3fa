"""Exports Mixer params to a timm `MlpMixer` state_dict (PyTorch).

Names (timm `timm/models/mlp_mixer.py`, e.g. `mixer_b16_224`):

    stem/kernel (P,P,3,C)                  -> stem.proj.weight (C,3,P,P)   (HWIO -> OIHW)
    stem/bias                              -> stem.proj.bias
    MixerBlock_i/LayerNorm_0/{scale,bias}  -> blocks.i.norm1.{weight,bias}
    MixerBlock_i/token_mixing/Dense_j      -> blocks.i.mlp_tokens.fc{j+1}  (kernel transposed)
    MixerBlock_i/LayerNorm_1               -> blocks.i.norm2
    MixerBlock_i/channel_mixing/Dense_j    -> blocks.i.mlp_channels.fc{j+1}
    pre_head_layer_norm                    -> norm
    head/kernel (C,K)                      -> head.weight (K,C)

The mapping itself needs only numpy; `.safetensors` files are written with
`safetensors.numpy`, `.pth` files with torch. timm's Mixer uses the exact (erf)
GELU where the reference uses the tanh approximation, so exported logits differ
by ~1e-3 unless the timm model is built with `act_layer=partial(nn.GELU,
approximate='tanh')` (see `timm_model_kwargs(..., tanh_gelu=True)`).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from mixer_flax import fileio
from mixer_flax.checkpoint.info import describe
from mixer_flax.checkpoint.legacy import convert_legacy
from mixer_flax.checkpoint.timm_import import TIMM_SUBLAYERS, TIMM_TOP
from mixer_flax.checkpoint.tree import CheckpointError, flatten

__all__ = ['to_timm_state_dict', 'timm_model_kwargs', 'timm_model_name', 'save_state_dict',
           'import_timm_mlp_mixer']

_LEAF = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
_BLOCK = re.compile(r'^MixerBlock_(\d+)/(.+)/(kernel|scale|bias)$')


def _timm_name(key: str) -> str:
  if m := _BLOCK.match(key):
    block, layer, leaf = m.groups()
    if layer in TIMM_SUBLAYERS:
      return f'blocks.{block}.{TIMM_SUBLAYERS[layer]}.{_LEAF[leaf]}'
  else:
    module, _, leaf = key.rpartition('/')
    if module in TIMM_TOP and leaf in _LEAF:
      return f'{TIMM_TOP[module]}.{_LEAF[leaf]}'
  raise CheckpointError(f'Parameter {key!r} has no timm MlpMixer counterpart.')


def to_timm_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The timm `MlpMixer` state_dict (float32 numpy arrays) of our nested params."""
  state = {}
  for key, value in convert_legacy(flatten(params)).items():
    array = np.asarray(value, dtype=np.float32)
    if key == 'stem/kernel':
      array = array.transpose(3, 2, 0, 1)  # (P, P, 3, C) -> (C, 3, P, P)
    elif key.endswith('/kernel'):
      array = array.T  # Dense (in, out) -> Linear (out, in)
    state[_timm_name(key)] = np.ascontiguousarray(array)
  return state


def _ratio(width: int, hidden: int) -> float:
  """mlp_ratio r with timm's `int(r * hidden) == width` exactly."""
  ratio = width / hidden
  return ratio if int(ratio * hidden) == width else (width + 0.5) / hidden


def timm_model_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
  """Keyword arguments of `timm.models.mlp_mixer.MlpMixer` that fit `params`."""
  info = describe(params)
  if info['image_size'] is None:
    raise CheckpointError(f'{info["num_tokens"]} tokens do not form a square grid; timm\'s '
                          'MlpMixer needs a square image size.')
  return dict(num_classes=info['num_classes'] or 0, img_size=info['image_size'],
              patch_size=info['patch_size'], num_blocks=info['num_blocks'],
              embed_dim=info['hidden_dim'],
              mlp_ratio=(_ratio(info['tokens_mlp_dim'], info['hidden_dim']),
                         _ratio(info['channels_mlp_dim'], info['hidden_dim'])))


def timm_model_name(params: Mapping[str, Any]) -> str | None:
  """The registered timm model (e.g. 'mixer_b16_224') with these dims, or None."""
  info = describe(params)
  sizes = {512: 's', 768: 'b', 1024: 'l'}
  blocks = {'s': 8, 'b': 12, 'l': 24}
  size = sizes.get(info['hidden_dim'])
  if (size is None or info['num_blocks'] != blocks[size] or info['image_size'] != 224
      or info['patch_size'] not in (16, 32)
      or (info['tokens_mlp_dim'], info['channels_mlp_dim']) != (info['hidden_dim'] // 2,
                                                               info['hidden_dim'] * 4)):
    return None
  return f'mixer_{size}{info["patch_size"]}_224'


def save_state_dict(path: str, state: Mapping[str, np.ndarray], *,
                    metadata: Mapping[str, str] | None = None) -> None:
  """Writes `state` as `.safetensors` (safetensors only) or `.pth`/`.pt` (needs torch)."""
  if path.endswith('.safetensors'):
    from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
    data = save({k: np.ascontiguousarray(v) for k, v in state.items()},
                metadata=dict(metadata or {}))
    fileio.write_atomic(path, data, what='the timm state_dict')
  elif path.endswith(('.pth', '.pt', '.bin')):
    import torch  # pylint: disable=g-import-not-at-top
    needed = sum(np.asarray(v).nbytes for v in state.values())
    with fileio.atomic_output(path, what='the timm state_dict', needed=needed) as f:
      torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, f)
  else:
    raise ValueError(f'{path}: unknown format; use a .safetensors or .pth file name.')


def import_timm_mlp_mixer():
  """Imports `timm.models.mlp_mixer`, tolerating a torchvision without its C++ ops.

  timm imports torchvision at import time (only for FrozenBatchNorm2d and data
  transforms, none of which MlpMixer uses). torchvision's PyPI wheels link
  their ops against the CUDA build of torch; next to a CPU-only torch their
  ops library does not load and `import torchvision` then fails while
  registering fake kernels for `torchvision::nms`/`qnms`. In that case only,
  we declare those two operator schemas (no kernels) and import again. The
  Mixer forward pass uses torch.nn layers only, so its numbers are unaffected.
  """
  import torch  # pylint: disable=g-import-not-at-top
  try:
    import torchvision  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except RuntimeError as e:
    if 'torchvision::' not in str(e):
      raise
    for name in [n for n in sys.modules if n == 'torchvision' or n.startswith('torchvision.')]:
      del sys.modules[name]
    lib = torch.library.Library('torchvision', 'FRAGMENT')
    for op in ('nms', 'qnms'):
      lib.define(f'{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')
    import_timm_mlp_mixer.torchvision_ops_stub = lib  # Keep the registration alive.
    import torchvision  # noqa: F401,F811  # pylint: disable=g-import-not-at-top
  # A huggingface_hub installed without its dependencies (an older README's `--no-deps` line)
  # prints an import error that timm then tolerates (hub downloads off): not ours to show.
  said = io.StringIO()
  try:
    with contextlib.redirect_stdout(said):
      from timm.models import mlp_mixer  # pylint: disable=g-import-not-at-top
  except BaseException:
    sys.stdout.write(said.getvalue())
    raise
  return mlp_mixer


def count(state: Mapping[str, np.ndarray]) -> int:
  """Number of scalars in a state_dict."""
  return sum(math.prod(v.shape) for v in state.values())


def verify(params: dict, state: dict, *, seed: int = 0) -> float:
  """Max |logits difference| between our Flax model and timm on random images."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from mixer_flax import models  # pylint: disable=g-import-not-at-top
  kwargs = timm_model_kwargs(params)
  timm_model = import_timm_mlp_mixer().MlpMixer(**kwargs).eval()
  timm_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
  info = describe(params)
  ours = models.MlpMixer(num_classes=info['num_classes'], patch_size=info['patch_size'],
                         hidden_dim=info['hidden_dim'], num_blocks=info['num_blocks'],
                         tokens_mlp_dim=info['tokens_mlp_dim'],
                         channels_mlp_dim=info['channels_mlp_dim'])
  size = info['image_size']
  images = np.random.default_rng(seed).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  expected = np.asarray(jax.jit(ours.apply)({'params': params}, images))
  with torch.no_grad():
    got = timm_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  return float(np.abs(got - expected).max())
