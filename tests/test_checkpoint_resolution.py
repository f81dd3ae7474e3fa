"""Fine-tuning at any resolution: bilinear token-grid resampling of the token-mixing MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import CheckpointError, adapt

RES, CLASSES = 16, 5  # Mixer-Ti_4 at 16 px: a 4x4 token grid.


@pytest.mark.parametrize('old,new', [((4, 4), (3, 3)), ((4, 4), (6, 6)), ((4, 4), (4, 6)),
                                     ((14, 14), (24, 24)), ((14, 14), (8, 8)), ((3, 5), (7, 2))])
def test_interpolation_matrix_is_jax_image_resize(old, new):
  x = np.random.default_rng(0).standard_normal(old)
  want = jax.image.resize(jnp.asarray(x), new, 'linear', antialias=True)
  got = (adapt.interpolation_matrix(old, new) @ x.ravel()).reshape(new)
  np.testing.assert_allclose(got, want, atol=1e-5)


def _token_mlp(tokens, width=6, seed=0):
  rng = np.random.default_rng(seed)
  return {'Dense_0/kernel': rng.standard_normal((tokens, width)).astype(np.float32),
          'Dense_0/bias': rng.standard_normal(width).astype(np.float32),
          'Dense_1/kernel': rng.standard_normal((width, tokens)).astype(np.float32),
          'Dense_1/bias': rng.standard_normal(tokens).astype(np.float32)}


@pytest.mark.parametrize('new', [(3, 3), (5, 5), (4, 6), (8, 8)])
def test_resampled_token_mlp_on_a_constant_image(new):
  """Same hidden units (mixing sums kept) and the interpolated output map, exactly."""
  old = (4, 4)
  params = _token_mlp(16)
  resampled = adapt.resample_token_mixing(params, old_grid=old, new_grid=new)
  mlp = models.mixer.MlpBlock(6)  # the paper's token_mixing MLP, on (N, C, S)
  tokens = np.random.default_rng(1).standard_normal((2, 1, 8)).astype(np.float32)

  def run(p, count):
    variables = {'params': checkpoint.unflatten(p)}
    x = np.swapaxes(np.repeat(tokens, count, axis=1), 1, 2)
    return np.swapaxes(np.asarray(mlp.apply(variables, x), np.float64), 1, 2)
  before, after = run(params, 16), run(resampled, new[0] * new[1])
  r = adapt.interpolation_matrix(old, new)
  np.testing.assert_allclose(after, np.einsum('ts,nsc->ntc', r, before), atol=1e-4)
  np.testing.assert_allclose(resampled['Dense_0/kernel'].sum(0), params['Dense_0/kernel'].sum(0),
                             atol=1e-5)
  same = adapt.resample_token_mixing(params, old_grid=old, new_grid=old)
  for key, value in params.items():
    np.testing.assert_allclose(same[key], value, atol=1e-6)


@pytest.mark.parametrize('size', [12, 24, (16, 24)])
def test_load_pretrained_at_any_size(tmp_path, random_mixer_params, size):
  model = models.create_model('Mixer-Ti_4', num_classes=CLASSES)
  params = random_mixer_params(model, RES)
  path = str(tmp_path / 'ti4.npz')
  checkpoint.save_npz(path, params)
  assert checkpoint.finetune_overrides(model_name='Mixer-Ti_4', image_size=size,
                                       pretrained_image_size=RES) == {}
  h, w = (size, size) if isinstance(size, int) else size
  images = np.random.default_rng(2).uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
  init = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images)['params'])
  restored = checkpoint.load_pretrained(path=path, init_params=init, token_grid=(h // 4, w // 4),
                                        keep_head=True)
  tm = restored['MixerBlock_1']['token_mixing']
  grid = (h // 4, w // 4)
  expected = adapt.resample_token_mixing(
      checkpoint.flatten(params['MixerBlock_1']['token_mixing']), old_grid=(4, 4), new_grid=grid)
  np.testing.assert_array_equal(checkpoint.flatten(tm)['Dense_1/kernel'],
                                expected['Dense_1/kernel'])
  np.testing.assert_array_equal(restored['stem']['kernel'], params['stem']['kernel'])
  assert np.isfinite(jax.jit(model.apply)({'params': restored}, images)).all()
  if isinstance(size, int):  # What `scripts/evaluate.py --adapt_resolution` loads.
    _, loaded, arch = checkpoint.load_model(path, image_size=size, adapt_resolution=True)
    assert arch['image_size'] == size
    np.testing.assert_array_equal(loaded['MixerBlock_1']['token_mixing']['Dense_1']['kernel'],
                                  expected['Dense_1/kernel'])
    with pytest.raises(ValueError, match=f'image_size={size}'):
      checkpoint.load_model(path, image_size=size)


def test_integer_factor_keeps_block_diagonal_and_rejects_other_widths(tmp_path,
                                                                     random_mixer_params):
  model = models.create_model('Mixer-Ti_4', num_classes=CLASSES)
  path = str(tmp_path / 'ti4.npz')
  checkpoint.save_npz(path, random_mixer_params(model, RES))
  over = checkpoint.finetune_overrides(model_name='Mixer-Ti_4', image_size=32,
                                       pretrained_image_size=RES)
  assert over == {'tokens_mlp_dim': 256}

  def shapes(**overrides):
    big = models.create_model('Mixer-Ti_4', num_classes=CLASSES, **overrides)
    x = jnp.zeros((1, 32, 32, 3))
    return jax.eval_shape(lambda: big.init(jax.random.PRNGKey(0), x)['params'])
  wide = checkpoint.load_pretrained(path=path, init_params=shapes(**over), keep_head=True)
  kernel = wide['MixerBlock_0']['token_mixing']['Dense_0']['kernel']
  assert kernel.shape == (64, 256) and (kernel == 0).mean() > 0.7  # Block-diagonal: 3/4 zeros.
  same_width = checkpoint.load_pretrained(path=path, init_params=shapes(), keep_head=True)
  assert same_width['MixerBlock_0']['token_mixing']['Dense_0']['kernel'].shape == (64, 64)
  with pytest.raises(CheckpointError, match=r"ti4\.npz: parameter 'MixerBlock_0/token_mixing/"
                                            r"Dense_0/kernel' has shape \(16, 64\) .* expects "
                                            r'\(64, 100\)'):
    checkpoint.load_pretrained(path=path, init_params=shapes(tokens_mlp_dim=100), keep_head=True)


def test_finetune_overrides_any_size():
  assert checkpoint.finetune_overrides(model_name='Mixer-B_16', image_size=448) == {
      'tokens_mlp_dim': 1536}
  assert checkpoint.finetune_overrides(model_name='Mixer-B_16', image_size=384) == {}
  assert checkpoint.finetune_overrides(model_name='Mixer-B_16', image_size=(448, 448)) == {
      'tokens_mlp_dim': 1536}
  assert checkpoint.finetune_overrides(model_name='Mixer-B_16', image_size=(224, 448)) == {}
  with pytest.raises(ValueError, match=r'image_size=200 .*patch size 16'):
    checkpoint.finetune_overrides(model_name='Mixer-B_16', image_size=200)
