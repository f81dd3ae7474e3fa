"""The model zoo: MLP-Mixer variants by name, and `create_model`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from mixer_flax.models.mixer import MlpMixer


def _config(name: str, *, patch_size: int, hidden_dim: int, num_blocks: int,
            tokens_mlp_dim: int, channels_mlp_dim: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      name=name, patch_size=patch_size, hidden_dim=hidden_dim, num_blocks=num_blocks,
      tokens_mlp_dim=tokens_mlp_dim, channels_mlp_dim=channels_mlp_dim))


_S = dict(hidden_dim=512, num_blocks=8, tokens_mlp_dim=256, channels_mlp_dim=2048)
_B = dict(hidden_dim=768, num_blocks=12, tokens_mlp_dim=384, channels_mlp_dim=3072)
_L = dict(hidden_dim=1024, num_blocks=24, tokens_mlp_dim=512, channels_mlp_dim=4096)
_H = dict(hidden_dim=1280, num_blocks=32, tokens_mlp_dim=640, channels_mlp_dim=5120)

# Paper variants (Table 1; `D_S` is for 224 px inputs) under the released
# checkpoint file names, plus two small variants that are NOT from the paper,
# sized for CPU runs: Mixer-Ti_4 (for the 8x8-upscaled digits, 16-32 px) and
# Mixer-Ti_16 (224 px smoke runs).
MODEL_CONFIGS: dict[str, ml_collections.ConfigDict] = {
    'Mixer-S_32': _config('Mixer-S_32', patch_size=32, **_S),
    'Mixer-S_16': _config('Mixer-S_16', patch_size=16, **_S),
    'Mixer-S_8': _config('Mixer-S_8', patch_size=8, **_S),
    'Mixer-B_32': _config('Mixer-B_32', patch_size=32, **_B),
    'Mixer-B_16': _config('Mixer-B_16', patch_size=16, **_B),
    'Mixer-L_32': _config('Mixer-L_32', patch_size=32, **_L),
    'Mixer-L_16': _config('Mixer-L_16', patch_size=16, **_L),
    'Mixer-H_14': _config('Mixer-H_14', patch_size=14, **_H),
    'Mixer-Ti_4': _config('Mixer-Ti_4', patch_size=4, hidden_dim=128, num_blocks=4,
                          tokens_mlp_dim=64, channels_mlp_dim=512),
    'Mixer-Ti_16': _config('Mixer-Ti_16', patch_size=16, hidden_dim=192, num_blocks=4,
                           tokens_mlp_dim=96, channels_mlp_dim=768),
}

# Constructor arguments of MlpMixer that `create_model` accepts as overrides (config.model).
OVERRIDABLE = ('patch_size', 'hidden_dim', 'num_blocks', 'tokens_mlp_dim', 'channels_mlp_dim',
               'stoch_depth', 'dropout', 'head_bias_init', 'dtype', 'remat')


def unknown_overrides(overrides: Any) -> list[str]:
  """The keys of `overrides` that `create_model` does not accept (sorted)."""
  return sorted(set(overrides) - set(OVERRIDABLE))


def get_config(name: str) -> ml_collections.ConfigDict:
  """Returns a copy of the architecture config of variant `name` (e.g. 'Mixer-B_16')."""
  if name not in MODEL_CONFIGS:
    raise KeyError(f'Unknown model {name!r}; known models: {", ".join(MODEL_CONFIGS)}.')
  return ml_collections.ConfigDict(MODEL_CONFIGS[name].to_dict())


def create_model(name: str, *, num_classes: int | None, formulation: str | None = None,
                 **overrides: Any) -> MlpMixer:
  """Builds variant `name` with a `num_classes` head.

  Args:
    name: a key of `MODEL_CONFIGS`.
    num_classes: head width (0/None: the model returns pre-logits).
    formulation: `MlpMixer.formulation` (None: the backend's default; performance only).
    **overrides: any of `OVERRIDABLE`; `dtype` may be a string ('bfloat16').
      For fine-tuning at K times the pre-training resolution pass
      `tokens_mlp_dim=K*K*D_S` (see `checkpoint.load_pretrained`).

  Returns:
    An `MlpMixer` module.
  """
  unknown = unknown_overrides(overrides)
  if unknown:
    raise TypeError(f'Unknown model override(s) {unknown} for {name!r}; '
                    f'allowed: {", ".join(OVERRIDABLE)}.')
  kwargs = get_config(name).to_dict()
  del kwargs['name']
  kwargs.update({k: v for k, v in overrides.items() if v is not None})
  if isinstance(kwargs.get('dtype'), str):
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  return MlpMixer(num_classes=num_classes, formulation=formulation, **kwargs)


def num_params(params: Any) -> int:
  """Total number of scalars in a parameter tree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
