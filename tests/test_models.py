"""Model zoo: exact parameter counts, official names/shapes, reference function."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from mixer_flax import models

# Exact parameter counts of the released checkpoints (1000-class head, 224 px).
EXACT_COUNTS = {
    'Mixer-S_32': 19_104_624, 'Mixer-S_16': 18_528_264, 'Mixer-S_8': 20_646_504,
    'Mixer-B_32': 60_293_428, 'Mixer-B_16': 59_880_472, 'Mixer-L_16': 208_196_168,
}
# Table 1 (params without head, millions, rounded).
PAPER_MILLIONS = {'Mixer-S_32': 19, 'Mixer-S_16': 18, 'Mixer-B_32': 60, 'Mixer-B_16': 59,
                  'Mixer-L_32': 206, 'Mixer-L_16': 207, 'Mixer-H_14': 431}


def _shapes(name, num_classes=1000, res=224):
  model = models.create_model(name, num_classes=num_classes)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, res, res, 3))))
  return variables['params']


@pytest.mark.parametrize('name', sorted(EXACT_COUNTS))
def test_exact_param_counts(name):
  assert models.num_params(_shapes(name)) == EXACT_COUNTS[name]


def test_b16_21k_param_count():
  assert models.num_params(_shapes('Mixer-B_16', num_classes=21843)) == 75_908_739


@pytest.mark.parametrize('name', sorted(PAPER_MILLIONS))
def test_table1_params_without_head(name):
  params = _shapes(name, num_classes=0)
  assert round(models.num_params(params) / 1e6) == PAPER_MILLIONS[name]


def test_b16_official_names_and_shapes():
  flat = {k: v.shape for k, v in flatten_dict(_shapes('Mixer-B_16'), sep='/').items()}
  expected = {'stem/kernel': (16, 16, 3, 768), 'stem/bias': (768,),
              'pre_head_layer_norm/scale': (768,), 'pre_head_layer_norm/bias': (768,),
              'head/kernel': (768, 1000), 'head/bias': (1000,)}
  for i in range(12):
    b = f'MixerBlock_{i}'
    expected.update({
        f'{b}/LayerNorm_0/scale': (768,), f'{b}/LayerNorm_0/bias': (768,),
        f'{b}/token_mixing/Dense_0/kernel': (196, 384), f'{b}/token_mixing/Dense_0/bias': (384,),
        f'{b}/token_mixing/Dense_1/kernel': (384, 196), f'{b}/token_mixing/Dense_1/bias': (196,),
        f'{b}/LayerNorm_1/scale': (768,), f'{b}/LayerNorm_1/bias': (768,),
        f'{b}/channel_mixing/Dense_0/kernel': (768, 3072),
        f'{b}/channel_mixing/Dense_0/bias': (3072,),
        f'{b}/channel_mixing/Dense_1/kernel': (3072, 768),
        f'{b}/channel_mixing/Dense_1/bias': (768,),
    })
  assert flat == expected


# A literal transcription of the reference formulation (conv stem, explicit
# transposes around the token MLP), used to check that our fused layout
# computes the same function from the same parameters.
class _RefMlp(nn.Module):
  mlp_dim: int

  @nn.compact
  def __call__(self, x):
    y = nn.Dense(self.mlp_dim)(x)
    y = nn.gelu(y)
    return nn.Dense(x.shape[-1])(y)


class MixerBlock(nn.Module):  # noqa: D101 - named like the reference for its param names.
  tokens_mlp_dim: int
  channels_mlp_dim: int

  @nn.compact
  def __call__(self, x):
    y = nn.LayerNorm(epsilon=1e-6)(x)
    y = jnp.swapaxes(y, 1, 2)
    y = _RefMlp(self.tokens_mlp_dim, name='token_mixing')(y)
    y = jnp.swapaxes(y, 1, 2)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-6)(x)
    return x + _RefMlp(self.channels_mlp_dim, name='channel_mixing')(y)


class _RefMixer(nn.Module):
  num_classes: int
  patch_size: int
  hidden_dim: int
  num_blocks: int
  tokens_mlp_dim: int
  channels_mlp_dim: int

  @nn.compact
  def __call__(self, x):
    p = self.patch_size
    x = nn.Conv(self.hidden_dim, (p, p), strides=(p, p), name='stem')(x)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    for _ in range(self.num_blocks):
      x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim)(x)
    x = nn.LayerNorm(epsilon=1e-6, name='pre_head_layer_norm')(x)
    x = jnp.mean(x, axis=1)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name='head')(x)


def _random_params(params, seed=0):
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [0.2 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_function_matches_reference_formulation():
  cfg = dict(patch_size=4, hidden_dim=32, num_blocks=3, tokens_mlp_dim=24, channels_mlp_dim=48)
  ours = models.MlpMixer(num_classes=7, **cfg)
  ref = _RefMixer(num_classes=7, **cfg)
  images = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 12, 3), minval=-1, maxval=1)
  params = ours.init(jax.random.PRNGKey(0), images)['params']
  ref_params = ref.init(jax.random.PRNGKey(0), images)['params']
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref_params)
  assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(jnp.shape, ref_params)
  params = _random_params(params)  # non-zero head so logits are informative
  out = ours.apply({'params': params}, images)
  expected = ref.apply({'params': params}, images)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  assert out.shape == (3, 7) and out.dtype == jnp.float32


def test_zero_head_and_prelogits():
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  images = jnp.zeros((2, 16, 16, 3))
  params = model.init(jax.random.PRNGKey(0), images)['params']
  assert not np.any(params['head']['kernel'])
  logits, pre = model.apply({'params': params}, images, return_prelogits=True)
  assert logits.shape == (2, 10) and pre.shape == (2, 128)
  feats = models.create_model('Mixer-Ti_4', num_classes=0).apply(
      {'params': {k: v for k, v in params.items() if k != 'head'}}, images)
  np.testing.assert_array_equal(feats, pre)


def test_head_bias_init_and_bf16():
  model = models.create_model('Mixer-Ti_4', num_classes=5, head_bias_init=-6.9, dtype='bfloat16')
  images = jnp.ones((2, 16, 16, 3)) * 0.5
  params = model.init(jax.random.PRNGKey(0), images)['params']
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x: x.dtype == jnp.float32, params))
  logits = model.apply({'params': params}, images)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, -6.9, atol=0.05)


def test_stochastic_depth_and_dropout():
  model = models.create_model('Mixer-Ti_4', num_classes=0, stoch_depth=0.5, dropout=0.1)
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, 16, 16, 3), minval=-1, maxval=1)
  params = model.init(jax.random.PRNGKey(0), images)['params']
  eval_a = model.apply({'params': params}, images, train=False)
  eval_b = models.create_model('Mixer-Ti_4', num_classes=0).apply({'params': params}, images)
  np.testing.assert_array_equal(eval_a, eval_b)  # identity at inference
  tr1 = model.apply({'params': params}, images, train=True, rngs={'dropout': jax.random.PRNGKey(2)})
  tr2 = model.apply({'params': params}, images, train=True, rngs={'dropout': jax.random.PRNGKey(3)})
  assert not np.allclose(tr1, tr2) and not np.allclose(tr1, eval_a)


def test_bad_inputs():
  with pytest.raises(KeyError, match='Mixer-X_1'):
    models.get_config('Mixer-X_1')
  with pytest.raises(TypeError, match='hidden_size'):
    models.create_model('Mixer-B_16', num_classes=10, hidden_size=3)
  model = models.create_model('Mixer-Ti_4', num_classes=2)
  with pytest.raises(ValueError, match='not divisible by patch_size=4'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 18, 16, 3)))


def _rel(a, b):
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize('token_layout, remat, token_hidden, gelu_remat', [
    ('nsc', False, 'dm', False), ('snc', False, 'dm', False), ('snc', True, 'dm', False),
    ('snc', False, 'md', True), ('nsc', False, 'md', False), ('snc', True, 'md', True)])
def test_token_layouts_match_reference_logits_and_grads(token_layout, remat, token_hidden,
                                                        gelu_remat):
  # Same parameters, same function as the swapaxes + Dense reference, in f32: logits and the
  # gradient of a loss w.r.t. every parameter (rel <= 1e-5).
  cfg = dict(patch_size=4, hidden_dim=32, num_blocks=2, tokens_mlp_dim=24, channels_mlp_dim=48)
  ours = models.MlpMixer(num_classes=7, token_layout=token_layout, remat=remat,
                         token_hidden=token_hidden, gelu_remat=gelu_remat,
                         inference_chunk=0, **cfg)
  ref = _RefMixer(num_classes=7, **cfg)
  images = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 12, 3), minval=-1, maxval=1)
  params = ours.init(jax.random.PRNGKey(0), images)['params']
  assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(
      jnp.shape, ref.init(jax.random.PRNGKey(0), images)['params'])
  params = _random_params(params, seed=4)
  labels = jax.nn.one_hot(jnp.arange(3) % 7, 7)

  def loss(model, train):
    return lambda p: -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(
        model.apply({'params': p}, images, **train)), -1))

  assert _rel(jax.jit(ours.apply)({'params': params}, images),
              jax.jit(ref.apply)({'params': params}, images)) <= 1e-5
  grads = jax.jit(jax.grad(loss(ours, {'train': True})))(params)
  ref_grads = jax.jit(jax.grad(loss(ref, {})))(params)
  leaves, ref_leaves = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)
  assert _rel(np.concatenate([np.ravel(g) for g in leaves]),
              np.concatenate([np.ravel(g) for g in ref_leaves])) <= 1e-5
  total = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in ref_leaves))
  for g, r in zip(leaves, ref_leaves):
    # The token-mixing output bias shifts a token uniformly over channels, which the next
    # LayerNorm removes: its true gradient is 0 and both sides hold rounding only.
    scale = np.linalg.norm(r) if np.linalg.norm(r) > 1e-4 * total else total
    assert np.linalg.norm(np.asarray(g, np.float64) - r) <= 1e-5 * scale


def test_token_layouts_agree_on_chunks_stochastic_depth_and_bf16():
  kw = dict(num_classes=5, stoch_depth=0.5)
  nsc = models.create_model('Mixer-Ti_4', token_layout='nsc', **kw)
  snc = models.create_model('Mixer-Ti_4', token_layout='snc', **kw)
  images = jax.random.uniform(jax.random.PRNGKey(1), (5, 16, 16, 3), minval=-1, maxval=1)
  params = _random_params(nsc.init(jax.random.PRNGKey(0), images)['params'], seed=2)
  rngs = {'dropout': jax.random.PRNGKey(3)}
  # Stochastic depth drops the same examples in both layouts (one draw per example).
  a, b, c = (jax.jit(lambda p, m=m: m.apply({'params': p}, images, train=True, rngs=rngs))(
      params) for m in (nsc, snc, snc.clone(token_hidden='md', gelu_remat=True)))
  assert _rel(b, a) <= 1e-5 and _rel(c, a) <= 1e-5

  def infer(model):
    return jax.jit(lambda p: model.apply({'params': p}, images, return_prelogits=True))(params)

  logits, pre = infer(nsc)
  c_logits, c_pre = infer(snc.clone(inference_chunk=2))  # 2 + 2 + remainder 1
  assert _rel(c_logits, logits) <= 1e-5 and _rel(c_pre, pre) <= 1e-5 and c_pre.shape == (5, 128)
  a, b = (infer(m.clone(dtype=jnp.bfloat16))[0] for m in (nsc, snc))
  assert b.dtype == jnp.float32 and _rel(b, a) <= 3e-2 and _rel(b, logits) <= 3e-2
  with pytest.raises(ValueError, match="token_layout='ncs'"):
    models.create_model('Mixer-Ti_4', num_classes=5, token_layout='ncs').init(
        jax.random.PRNGKey(0), images)
  with pytest.raises(ValueError, match="token_hidden='nd'"):
    models.create_model('Mixer-Ti_4', num_classes=5, token_hidden='nd').init(
        jax.random.PRNGKey(0), images)
