"""Models: exact parameter counts, official names and shapes, the paper module against a numpy
oracle, every faster formulation against the paper module, stochastic depth as big_vision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from scipy import stats

from mixer_flax import backends, models
from mixer_flax.models import chunking, formulations, mixer

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


def _random_params(params, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda x: (0.2 * rng.standard_normal(x.shape)).astype(np.float32), params)


def _init(model, images, seed=0):
  return jax.jit(model.init)(jax.random.PRNGKey(seed), images)['params']


def _rel(a, b):
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  return np.linalg.norm(a - b) / np.linalg.norm(b)


def _numpy_mixer(p, images, patch):
  """Figure 1 of the paper in float64 numpy: the oracle of the paper module."""
  def ln(x, q):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6) * q['scale'] + q['bias']

  def mlp(x, q):  # Dense -> tanh-approximated GELU -> Dense
    h = x @ q['Dense_0']['kernel'] + q['Dense_0']['bias']
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    return h @ q['Dense_1']['kernel'] + q['Dense_1']['bias']

  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), p)
  n, h, w, c = images.shape
  x = np.asarray(images, np.float64).reshape(n, h // patch, patch, w // patch, patch, c)
  x = x.transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, patch * patch * c)  # row-major patches
  x = x @ p['stem']['kernel'].reshape(patch * patch * c, -1) + p['stem']['bias']
  i = 0
  while f'MixerBlock_{i}' in p:
    b = p[f'MixerBlock_{i}']
    x = x + np.swapaxes(mlp(np.swapaxes(ln(x, b['LayerNorm_0']), 1, 2), b['token_mixing']), 1, 2)
    x = x + mlp(ln(x, b['LayerNorm_1']), b['channel_mixing'])
    i += 1
  pre_logits = ln(x, p['pre_head_layer_norm']).mean(1)
  return pre_logits @ p['head']['kernel'] + p['head']['bias']


def test_paper_module_is_figure_1():
  cfg = dict(patch_size=4, hidden_dim=32, num_blocks=3, tokens_mlp_dim=24, channels_mlp_dim=48)
  paper = models.MlpMixer(num_classes=7, formulation='paper', **cfg)
  images = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 12, 3), minval=-1, maxval=1)
  params = _init(paper, images)
  assert not np.any(params['head']['kernel'])  # zero-initialised head
  params = _random_params(params)  # non-zero head so logits are informative
  out = jax.jit(paper.apply)({'params': params}, images)
  assert out.shape == (3, 7) and out.dtype == jnp.float32
  assert _rel(out, _numpy_mixer(params, images, 4)) <= 1e-5


def test_zero_head_and_prelogits():
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  images = jnp.zeros((2, 16, 16, 3))
  params = _init(model, images)
  assert not np.any(params['head']['kernel'])
  logits, pre = jax.jit(lambda p: model.apply({'params': p}, images, return_prelogits=True))(
      params)
  assert logits.shape == (2, 10) and pre.shape == (2, 128)
  feats = jax.jit(models.create_model('Mixer-Ti_4', num_classes=0).apply)(
      {'params': {k: v for k, v in params.items() if k != 'head'}}, images)
  np.testing.assert_array_equal(feats, pre)


def test_head_bias_init_and_bf16():
  model = models.create_model('Mixer-Ti_4', num_classes=5, head_bias_init=-6.9, dtype='bfloat16')
  images = jnp.ones((2, 16, 16, 3)) * 0.5
  params = _init(model, images)
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x: x.dtype == jnp.float32, params))
  logits = jax.jit(model.apply)({'params': params}, images)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, -6.9, atol=0.05)


def test_stochastic_depth_and_dropout():
  model = models.create_model('Mixer-Ti_4', num_classes=0, stoch_depth=0.5, dropout=0.1)
  images = jax.random.uniform(jax.random.PRNGKey(1), (8, 16, 16, 3), minval=-1, maxval=1)
  params = _init(model, images)
  eval_a = jax.jit(model.apply)({'params': params}, images)
  eval_b = jax.jit(models.create_model('Mixer-Ti_4', num_classes=0).apply)(
      {'params': params}, images)
  np.testing.assert_array_equal(eval_a, eval_b)  # inference scales nothing
  train = jax.jit(lambda k: model.apply({'params': params}, images, train=True,
                                        rngs={'dropout': k}))
  tr1, tr2 = train(jax.random.PRNGKey(2)), train(jax.random.PRNGKey(3))
  assert not np.allclose(tr1, tr2) and not np.allclose(tr1, eval_a)


def test_bad_inputs():
  with pytest.raises(KeyError, match='Mixer-X_1'):
    models.get_config('Mixer-X_1')
  with pytest.raises(TypeError, match='hidden_size'):
    models.create_model('Mixer-B_16', num_classes=10, hidden_size=3)
  images = jnp.zeros((1, 16, 16, 3))
  for formulation in (None, 'paper'):
    model = models.create_model('Mixer-Ti_4', num_classes=2, formulation=formulation)
    with pytest.raises(ValueError, match='not divisible by patch_size=4'):
      model.init(jax.random.PRNGKey(0), jnp.zeros((1, 18, 16, 3)))
  with pytest.raises(ValueError, match="formulation='ncs' is unknown; use one of paper, nsc"):
    models.create_model('Mixer-Ti_4', num_classes=2, formulation='ncs').init(
        jax.random.PRNGKey(0), images)


_CFG = dict(patch_size=4, hidden_dim=32, num_blocks=2, tokens_mlp_dim=24, channels_mlp_dim=48,
            stoch_depth=0.5)
_IMAGES = jax.random.uniform(jax.random.PRNGKey(1), (6, 16, 12, 3), minval=-1, maxval=1)
_LABELS = jax.nn.one_hot(jnp.arange(6) % 7, 7)


def _logits_and_grads(model, params):
  """Logits at inference, and the gradient of a loss in training mode (stochastic depth)."""
  def loss(p):
    logits = model.apply({'params': p}, _IMAGES, train=True,
                         rngs={'dropout': jax.random.PRNGKey(5)})
    return -jnp.mean(jnp.sum(_LABELS * jax.nn.log_softmax(logits), -1))
  return jax.jit(lambda p: (model.apply({'params': p}, _IMAGES), jax.grad(loss)(p)))(params)


@pytest.fixture(scope='module')
def paper_reference():
  paper = models.MlpMixer(num_classes=7, formulation='paper', **_CFG)
  init = _init(paper, _IMAGES)
  params = _random_params(init, seed=4)
  return init, params, _logits_and_grads(paper, params)


@pytest.mark.parametrize('formulation, remat', [
    *((name, False) for name in formulations.FORMULATIONS), ('snc', True), ('paper', True)])
def test_formulations_match_the_paper_module_logits_and_grads(paper_reference, formulation,
                                                              remat):
  # Same parameters, same function as the paper module in f32: logits, and the gradient of a
  # loss w.r.t. every parameter in training mode with stochastic depth (rel <= 1e-5).
  paper_init, params, (ref_logits, ref_grads) = paper_reference
  ours = models.MlpMixer(num_classes=7, formulation=formulation, remat=remat, **_CFG)
  init = _init(ours, _IMAGES)
  assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(paper_init)
  for a, b in zip(jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(paper_init)):
    np.testing.assert_array_equal(a, b)  # the same initialisation, parameter by parameter
  logits, grads = _logits_and_grads(ours, params)
  assert _rel(logits, ref_logits) <= 1e-5
  leaves, ref_leaves = jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(ref_grads)
  assert _rel(np.concatenate([np.ravel(g) for g in leaves]),
              np.concatenate([np.ravel(g) for g in ref_leaves])) <= 1e-5
  total = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in ref_leaves))
  for g, r in zip(leaves, ref_leaves):
    # The token-mixing output bias shifts a token uniformly over channels, which the next
    # LayerNorm removes: its true gradient is 0 and both sides hold rounding only.
    scale = np.linalg.norm(r) if np.linalg.norm(r) > 1e-4 * total else total
    assert np.linalg.norm(np.asarray(g, np.float64) - r) <= 1e-5 * scale


def test_default_chunked_inference_and_bf16_formulations(monkeypatch):
  model = models.create_model('Mixer-Ti_4', num_classes=5)  # the backend's default
  images = jax.random.uniform(jax.random.PRNGKey(1), (5, 16, 16, 3), minval=-1, maxval=1)
  params = _random_params(_init(model, images), seed=2)

  def infer(m):
    return jax.jit(lambda p: m.apply({'params': p}, images, return_prelogits=True))(params)

  logits, pre = infer(model.clone(formulation='paper'))
  # Two images' widest activation (16 tokens x D_C 512 floats each) per chunk: 2 + 2 + 1.
  cpu = backends.DEFAULTS['cpu']._replace(inference_chunk_bytes=2 * 16 * 512 * 4)
  monkeypatch.setitem(backends.DEFAULTS, 'cpu', cpu)
  assert chunking.chunk_size(model, images.shape) == 2
  c_logits, c_pre = infer(model)
  assert _rel(c_logits, logits) <= 1e-5 and _rel(c_pre, pre) <= 1e-5 and c_pre.shape == (5, 128)
  assert 'while' in jax.jit(lambda p: model.apply({'params': p}, images)).lower(
      params).as_text()  # lax.map: the chunks are a loop
  for name in formulations.FORMULATIONS:
    bf16 = infer(model.clone(formulation=name, dtype=jnp.bfloat16))[0]
    assert bf16.dtype == jnp.float32 and _rel(bf16, logits) <= 3e-2


def test_inference_chunk_sizes():
  # Largest power of two with the widest activation per chunk <= the backend's budget.
  b16 = models.create_model('Mixer-B_16', num_classes=1000)
  cpu = backends.DEFAULTS['cpu'].inference_chunk_bytes
  assert cpu == 32 * 2**20 and backends.DEFAULTS['gpu'].inference_chunk_bytes == 0
  assert chunking.chunk_size(b16, (32, 224, 224, 3), cpu) == 8  # 196 * 3072 * 4 B per image
  assert chunking.chunk_size(b16.clone(dtype=jnp.bfloat16), (32, 224, 224, 3), cpu) == 16
  assert chunking.chunk_size(b16, (32, 224, 224, 3), 0) == 0
  ti4 = models.create_model('Mixer-Ti_4', num_classes=10)
  assert chunking.chunk_size(ti4, (128, 16, 16, 3), cpu) > 128


# Stochastic depth as big_vision's mlp_mixer.py (issue 21).

def _block_and_inputs(n=512):
  block = mixer.MixerBlock(tokens_mlp_dim=8, channels_mlp_dim=16, drop_rate=0.5)
  x = jax.random.normal(jax.random.PRNGKey(0), (n, 4, 6))
  params = _random_params(_init(block, x, seed=1), seed=3)
  return block, x, params


def _branch_outcomes(block, params, x, key):
  """Per example: the output is the eval output (branches kept), x (dropped), or neither."""
  out = np.asarray(jax.jit(lambda p, k: block.apply({'params': p}, x, True,
                                                    rngs={'dropout': k}))(params, key))
  full = np.asarray(jax.jit(lambda p: block.apply({'params': p}, x))(params))
  kept = (np.abs(out - full) <= 1e-6 * np.abs(full - x).max()).all(axis=(1, 2))
  dropped = (out == np.asarray(x)).all(axis=(1, 2))  # y * 0 added: exactly x
  return kept, dropped


@pytest.mark.parametrize('silenced', ['token_mixing', 'channel_mixing'])
def test_stochastic_depth_keeps_or_zeroes_each_example_branch(silenced):
  # With one branch's output layer zeroed, the block is x + mask * other_branch(x): every
  # example's output is exactly the eval output or exactly x. big_vision does not rescale
  # kept branches by 1 / (1 - rate), which would match neither.
  block, x, params = _block_and_inputs()
  zero = jax.tree_util.tree_map(jnp.zeros_like, params[silenced]['Dense_1'])
  params = {**params, silenced: {**params[silenced], 'Dense_1': zero}}
  kept, dropped = _branch_outcomes(block, params, x, jax.random.PRNGKey(7))
  assert not (kept & dropped).any() and (kept | dropped).all()
  assert stats.binomtest(int(dropped.sum()), len(x), 0.5).pvalue > 1e-3


def test_stochastic_depth_masks_of_the_two_branches_are_independent():
  block, x, params = _block_and_inputs(n=2000)
  kept, dropped = _branch_outcomes(block, params, x, jax.random.PRNGKey(8))
  # both kept: (1 - 0.5)^2; both dropped: 0.5^2; the other half keeps exactly one branch.
  assert stats.binomtest(int(kept.sum()), len(x), 0.25).pvalue > 1e-3
  assert stats.binomtest(int(dropped.sum()), len(x), 0.25).pvalue > 1e-3


def test_stochastic_depth_rate_grows_linearly_over_blocks():
  # Block i drops both branches of an example with probability rate_i^2, rate_i = 0.9 i / 3.
  model = models.MlpMixer(num_classes=0, patch_size=4, hidden_dim=8, num_blocks=4,
                          tokens_mlp_dim=8, channels_mlp_dim=16, stoch_depth=0.9,
                          formulation='paper')
  images = jax.random.uniform(jax.random.PRNGKey(1), (3000, 8, 8, 3), minval=-1, maxval=1)
  params = _random_params(_init(model, images[:1]))
  _, state = jax.jit(lambda p: model.apply({'params': p}, images, train=True,
                                           rngs={'dropout': jax.random.PRNGKey(2)},
                                           capture_intermediates=True,
                                           mutable=['intermediates']))(params)
  inter = state['intermediates']
  x = np.asarray(inter['stem']['__call__'][0]).reshape(3000, 4, 8)
  for i in range(4):
    out = np.asarray(inter[f'MixerBlock_{i}']['__call__'][0])
    both_dropped = (out == x).all(axis=(1, 2))
    rate = 0.9 * i / 3
    if i == 0:
      assert not both_dropped.any()
    else:
      assert stats.binomtest(int(both_dropped.sum()), len(x), rate ** 2).pvalue > 1e-3, i
    assert model.drop_rate(i) == pytest.approx(rate)
    x = out
