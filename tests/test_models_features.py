"""models.features: stem tokens, every block's output and pre-logits of an MlpMixer."""

import jax
import numpy as np

from mixer_flax import models
from mixer_flax.models import features
from mixer_flax.models.common import LN_EPS


def _layer_norm(x, scale, bias):
  x = np.asarray(x, np.float64)
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + LN_EPS) * scale + bias


def test_features_shapes_and_pre_logits(random_mixer_params):
  model = models.create_model('Mixer-Ti_4', num_classes=7)
  params = random_mixer_params(model, (16, 24))
  images = np.random.default_rng(0).uniform(-1, 1, (3, 16, 24, 3)).astype(np.float32)
  feats = jax.jit(features, static_argnums=0)(model, {'params': params}, images)
  tokens = (3, 4 * 6, 128)
  assert {k: v.shape for k, v in feats.items()} == {
      'stem': tokens, 'MixerBlock_0': tokens, 'MixerBlock_1': tokens, 'MixerBlock_2': tokens,
      'MixerBlock_3': tokens, 'pre_logits': (3, 128), 'logits': (3, 7)}
  # The last block's output, LayerNorm'd and mean-pooled over tokens, is the pre-logits.
  norm = params['pre_head_layer_norm']
  pooled = _layer_norm(feats['MixerBlock_3'], norm['scale'], norm['bias']).mean(axis=1)
  np.testing.assert_allclose(feats['pre_logits'], pooled, atol=2e-5)
  logits, pre_logits = model.apply({'params': params}, images, return_prelogits=True)
  np.testing.assert_allclose(feats['logits'], logits, atol=1e-6)
  np.testing.assert_allclose(feats['pre_logits'], pre_logits, atol=1e-6)
  # The stem output is the patch embedding: patch (row 1, column 2) -> token 1 * 6 + 2.
  patch = images[:, 4:8, 8:12, :].reshape(3, -1)
  stem = patch @ params['stem']['kernel'].reshape(-1, 128) + params['stem']['bias']
  np.testing.assert_allclose(feats['stem'][:, 8], stem, atol=1e-5)
  assert not np.allclose(feats['MixerBlock_0'], feats['MixerBlock_1'])


def test_features_of_a_headless_model(random_mixer_params):
  model = models.create_model('Mixer-Ti_4', num_classes=0)
  params = random_mixer_params(model, 8)
  feats = features(model, {'params': params}, np.zeros((2, 8, 8, 3), np.float32))
  assert 'logits' not in feats and feats['pre_logits'].shape == (2, 128)


def test_features_are_the_paper_modules_intermediates(random_mixer_params):
  # Whatever the model's formulation (GPU: an (S, N, C) stream), features are the paper
  # module's stem tokens and block outputs, (N, S, C).
  model = models.create_model('Mixer-Ti_4', num_classes=5, formulation='snc')
  params = random_mixer_params(model, 8)
  images = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
  feats = features(model, {'params': params}, images)
  _, state = model.clone(formulation='paper').apply(
      {'params': params}, images, capture_intermediates=True, mutable=['intermediates'])
  paper = {k: v['__call__'][0] for k, v in state['intermediates'].items()
           if k == 'stem' or k.startswith('MixerBlock_')}
  paper['stem'] = paper['stem'].reshape(2, 4, 128)  # the conv's (N, H/P, W/P, C) grid
  assert set(paper) == set(feats) - {'pre_logits', 'logits'}
  for name in paper:
    np.testing.assert_allclose(feats[name], paper[name], atol=1e-5, err_msg=name)
