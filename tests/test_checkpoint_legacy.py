"""Older checkpoint layouts load key for key: renamed scopes, pre-linen MLP phases, unit dims."""

import jax
import numpy as np
import pytest

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import CheckpointError, legacy

RES, CLASSES = 16, 5
_PHASE_LEAVES = {'Dense_0/kernel': 'kernel1', 'Dense_0/bias': 'bias1',
                 'Dense_1/kernel': 'kernel2', 'Dense_1/bias': 'bias2'}


def _pre_linen_layout(params):
  """`params` in the oldest layout, written from the official names by hand.

  Blocks under `Mixer/encoderblock_N` with the MLPs as single pre-linen modules
  (`token_mixing_phase_0/kernel1`, ...), LayerNorms numbered across classes
  (`LayerNorm_0`, `LayerNorm_2`), `Mixer/encoder_norm`, a top-level `embedding`,
  and extra unit axes on the MLP arrays and the LayerNorm scales.
  """
  flat = {}
  for key, value in checkpoint.flatten(params).items():
    value = np.asarray(value)
    top, _, rest = key.partition('/')
    if top == 'stem':
      flat[f'embedding/{rest}'] = value
    elif top == 'pre_head_layer_norm':
      flat[f'Mixer/encoder_norm/{rest}'] = value
    elif top == 'head':
      flat[key] = value
    else:
      block = f'Mixer/encoderblock_{top.split("_")[1]}'
      mlp, _, leaf = rest.partition('/')
      if mlp in ('token_mixing', 'channel_mixing'):
        flat[f'{block}/{mlp}_phase_0/{_PHASE_LEAVES[leaf]}'] = value[None, ..., None, :]
      else:
        norm = {'LayerNorm_0': 'LayerNorm_0', 'LayerNorm_1': 'LayerNorm_2'}[mlp]
        flat[f'{block}/{norm}/{leaf}'] = value[None, None] if leaf == 'scale' else value
  return flat


def test_pre_linen_layout_loads_with_equal_logits(tmp_path, random_mixer_params):
  model = models.create_model('Mixer-Ti_4', num_classes=CLASSES)
  params = random_mixer_params(model, RES)
  old = _pre_linen_layout(params)
  assert 'Mixer/encoderblock_3/token_mixing_phase_0/kernel1' in old
  assert old['Mixer/encoderblock_0/channel_mixing_phase_0/kernel2'].shape == (1, 512, 1, 128)
  path = str(tmp_path / 'pre_linen.npz')
  np.savez(path, **old)

  loaded = checkpoint.flatten(checkpoint.load_npz(path))
  official = checkpoint.flatten(params)
  assert loaded.keys() == official.keys()
  for key, value in official.items():
    np.testing.assert_array_equal(loaded[key], value, err_msg=key)

  init = jax.eval_shape(lambda: params)
  restored = checkpoint.load_pretrained(path=path, init_params=init, keep_head=True)
  images = np.random.default_rng(0).uniform(-1, 1, (3, RES, RES, 3)).astype(np.float32)
  apply = jax.jit(model.apply)
  np.testing.assert_array_equal(apply({'params': restored}, images),
                                apply({'params': params}, images))


def test_pre_linen_renumbering_matches_flax():
  """Our TensorFlow-free renumbering equals flax.training.checkpoints.convert_pre_linen."""
  from flax.training.checkpoints import convert_pre_linen  # pylint: disable=g-import-not-at-top

  leaf = np.zeros(2)
  tree = {'encoderblock_10': {'LayerNorm_0': {'scale': leaf}, 'LayerNorm_2': {'scale': leaf},
                              'token_mixing_phase_0': {'kernel1': leaf}, 'Dense_5': {'bias': leaf}},
          'encoderblock_9': {'LayerNorm_3': {'scale': leaf}, 'Conv_1': {'kernel': leaf}},
          'embedding': {'kernel': leaf}}
  ours = checkpoint.flatten(legacy.convert_pre_linen(tree))
  assert ours.keys() == checkpoint.flatten(convert_pre_linen(tree)).keys()
  assert 'encoderblock_1/LayerNorm_1/scale' in ours  # encoderblock_10 sorts after _9.


def test_legacy_layout_errors_name_file_and_key(tmp_path):
  bad = {'Mixer/encoderblock_0/token_mixing_phase_0/kernel3': np.ones((2, 2), np.float32)}
  np.savez(tmp_path / 'phase.npz', **bad)
  with pytest.raises(CheckpointError, match=r"phase\.npz: unknown parameter .*kernel3"):
    checkpoint.load_npz(str(tmp_path / 'phase.npz'))
  rank = {'Mixer/encoderblock_0/LayerNorm_0/scale': np.ones((2, 3), np.float32)}
  np.savez(tmp_path / 'rank.npz', **rank)
  with pytest.raises(CheckpointError,
                     match=r"rank\.npz: parameter 'MixerBlock_0/LayerNorm_0/scale' has shape "
                           r'\(2, 3\); expected 1 axes'):
    checkpoint.load_npz(str(tmp_path / 'rank.npz'))
