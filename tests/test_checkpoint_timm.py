"""timm (PyTorch) export and import: key mapping, file formats, logits parity with timm's MlpMixer.

The parity tests need torch and timm. They skip when those are absent, unless
MIXER_REQUIRE_TORCH=1 (CI sets it), in which case a missing install fails.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import cli as checkpoint_cli
from mixer_flax.checkpoint import timm as export_timm
from mixer_flax.checkpoint import timm_import

RES, CLASSES = 16, 10
INSTALL = ('pip install torch==2.13.0 && pip install --no-deps torchvision==0.28.0 timm '
           'huggingface_hub safetensors')


def _require(what):
  """Imports the optional PyTorch stack or skips (fails under MIXER_REQUIRE_TORCH=1)."""
  try:
    if what == 'safetensors':
      import safetensors.numpy  # noqa: F401  # pylint: disable=g-import-not-at-top
      return None
    import torch  # noqa: F401  # pylint: disable=g-import-not-at-top
    return export_timm.import_timm_mlp_mixer()
  except ImportError as e:
    reason = f'{what} not installed ({e}); to run this test: {INSTALL}'
    if os.environ.get('MIXER_REQUIRE_TORCH') == '1':
      pytest.fail(f'MIXER_REQUIRE_TORCH=1 but {reason}')
    pytest.skip(reason)


def _shapes(name, image_size, num_classes, **overrides):
  model = models.create_model(name, num_classes=num_classes, **overrides)
  x = jnp.zeros((1, image_size, image_size, 3))
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))['params']


@pytest.fixture(scope='module')
def ti4():
  """Mixer-Ti_4 at 16 px with random non-zero parameters (LayerNorms and biases too)."""
  model = models.create_model('Mixer-Ti_4', num_classes=CLASSES)
  rng = np.random.default_rng(0)

  def leaf(path, s):
    x = rng.standard_normal(s.shape).astype(np.float32)
    name = path[-1].key
    if name == 'kernel':
      return x / np.float32(np.sqrt(np.prod(s.shape[:-1])))
    return np.float32(0.1) * x + np.float32(name == 'scale')
  params = jax.tree_util.tree_map_with_path(leaf, _shapes('Mixer-Ti_4', RES, CLASSES))
  images = np.random.default_rng(1).uniform(-1, 1, (4, RES, RES, 3)).astype(np.float32)
  logits = np.asarray(jax.jit(model.apply)({'params': params}, images))
  return params, images, logits


def test_state_dict_names_and_layouts(ti4):
  params, _, _ = ti4
  state = export_timm.to_timm_state_dict(params)
  # Names read from timm/models/mlp_mixer.py (MlpMixer, MixerBlock) and timm.layers.Mlp.
  expected = {'stem.proj.weight': (128, 3, 4, 4), 'stem.proj.bias': (128,),
              'norm.weight': (128,), 'norm.bias': (128,),
              'head.weight': (CLASSES, 128), 'head.bias': (CLASSES,)}
  for i in range(4):
    expected.update({
        f'blocks.{i}.norm1.weight': (128,), f'blocks.{i}.norm1.bias': (128,),
        f'blocks.{i}.mlp_tokens.fc1.weight': (64, 16), f'blocks.{i}.mlp_tokens.fc1.bias': (64,),
        f'blocks.{i}.mlp_tokens.fc2.weight': (16, 64), f'blocks.{i}.mlp_tokens.fc2.bias': (16,),
        f'blocks.{i}.norm2.weight': (128,), f'blocks.{i}.norm2.bias': (128,),
        f'blocks.{i}.mlp_channels.fc1.weight': (512, 128),
        f'blocks.{i}.mlp_channels.fc1.bias': (512,),
        f'blocks.{i}.mlp_channels.fc2.weight': (128, 512),
        f'blocks.{i}.mlp_channels.fc2.bias': (128,)})
  assert {k: v.shape for k, v in state.items()} == expected
  kernel = params['stem']['kernel']  # (h, w, in, out) -> (out, in, h, w)
  assert state['stem.proj.weight'][5, 2, 1, 3] == kernel[1, 3, 2, 5]
  np.testing.assert_array_equal(state['blocks.3.mlp_tokens.fc2.weight'],
                                params['MixerBlock_3']['token_mixing']['Dense_1']['kernel'].T)
  np.testing.assert_array_equal(state['blocks.1.norm2.weight'],
                                params['MixerBlock_1']['LayerNorm_1']['scale'])
  assert export_timm.timm_model_kwargs(params) == dict(
      num_classes=CLASSES, img_size=RES, patch_size=4, num_blocks=4, embed_dim=128,
      mlp_ratio=(0.5, 4.0))


def test_registered_timm_names_and_ratios():
  assert export_timm.timm_model_name(_shapes('Mixer-B_16', 224, 1000)) == 'mixer_b16_224'
  assert export_timm.timm_model_name(_shapes('Mixer-L_32', 224, 1000)) == 'mixer_l32_224'
  assert export_timm.timm_model_name(_shapes('Mixer-B_16', 448, 1000,
                                             tokens_mlp_dim=1536)) is None
  assert export_timm.timm_model_name(_shapes('Mixer-Ti_4', RES, 3)) is None
  # timm computes widths as int(ratio * dim); e.g. 15/11 * 11 == 14.999...
  for width, dim in [(15, 11), (120, 11), (384, 768), (1536, 768), (3, 7)]:
    assert int(export_timm._ratio(width, dim) * dim) == width  # pylint: disable=protected-access


def test_safetensors_file(ti4, tmp_path):
  _require('safetensors')
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  params, _, _ = ti4
  path = str(tmp_path / 'm.safetensors')
  export_timm.save_state_dict(path, export_timm.to_timm_state_dict(params))
  loaded = load_file(path)
  state = export_timm.to_timm_state_dict(params)
  assert loaded.keys() == state.keys()
  assert all(np.array_equal(loaded[k], state[k]) for k in state)


def _timm_logits(mlp_mixer, state, kwargs, images, **extra):
  import torch  # pylint: disable=g-import-not-at-top
  model = mlp_mixer.MlpMixer(**kwargs, **extra).eval()
  model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()},
                        strict=True)
  with torch.no_grad():
    return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def test_timm_logits_match(ti4):
  """Same logits in PyTorch: ~1e-4 with timm's exact GELU, ~1e-6 with its tanh GELU."""
  mlp_mixer = _require('torch+timm')
  import torch  # pylint: disable=g-import-not-at-top
  params, images, ours = ti4
  state = export_timm.to_timm_state_dict(params)
  kwargs = export_timm.timm_model_kwargs(params)
  exact = _timm_logits(mlp_mixer, state, kwargs, images)
  tanh = _timm_logits(mlp_mixer, state, kwargs, images,
                      act_layer=functools.partial(torch.nn.GELU, approximate='tanh'))
  assert np.abs(ours).max() > 0.5  # Non-trivial logits.
  err_exact, err_tanh = np.abs(exact - ours).max(), np.abs(tanh - ours).max()
  print(f'max |logits diff| vs timm: exact GELU {err_exact:.3g}, tanh GELU {err_tanh:.3g}')
  assert err_exact < 1e-3
  assert err_tanh < 1e-5
  assert err_exact > 10 * err_tanh  # The GELU approximation is the only real difference.


def test_export_script_writes_loadable_files(ti4, tmp_path, capsys):
  mlp_mixer = _require('torch+timm')
  import torch  # pylint: disable=g-import-not-at-top
  from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top
  params, images, ours = ti4
  src = str(tmp_path / 'ti4.npz')
  checkpoint.save_npz(src, params)
  kwargs = export_timm.timm_model_kwargs(params)
  for name in ('out.safetensors', 'out.pth'):
    assert checkpoint_cli.export_timm_main([src, str(tmp_path / name)]) == 0
  assert 'MlpMixer(**' in capsys.readouterr().out
  from_st = load_file(str(tmp_path / 'out.safetensors'))
  from_pth = torch.load(str(tmp_path / 'out.pth'), weights_only=True)
  for state in (from_st, from_pth):
    logits = _timm_logits(mlp_mixer, state, kwargs, images)
    assert np.abs(logits - ours).max() < 1e-3


def test_import_inverts_export_and_loads_everywhere(ti4, tmp_path):
  """export -> import is the identity; load_params, load_pretrained and load_model take the file."""
  _require('safetensors')
  params, images, logits = ti4
  flat = checkpoint.flatten(params)
  back = timm_import.from_timm_state_dict(export_timm.to_timm_state_dict(params))
  assert back.keys() == flat.keys()
  for key, value in flat.items():
    assert np.array_equal(back[key], value), key
  path = str(tmp_path / 'ti4.safetensors')
  export_timm.save_state_dict(path, export_timm.to_timm_state_dict(params))
  loaded = checkpoint.flatten(checkpoint.load_params(path))
  assert all(np.array_equal(loaded[k], v) for k, v in flat.items())
  restored = checkpoint.load_pretrained(path=path, init_params=jax.eval_shape(lambda: params),
                                        keep_head=True)
  model, model_params, arch = checkpoint.load_model(path)
  assert arch['model_name'] == 'Mixer-Ti_4' and arch['image_size'] == RES
  for p in (restored, model_params):
    np.testing.assert_array_equal(jax.jit(model.apply)({'params': p}, images), logits)


def test_import_of_a_timm_model_gives_its_logits(tmp_path):
  """A state_dict saved by timm itself (.pth, torch.load weights_only) computes timm's logits."""
  mlp_mixer = _require('torch+timm')
  import torch  # pylint: disable=g-import-not-at-top
  kwargs = dict(num_classes=CLASSES, img_size=RES, patch_size=4, num_blocks=2, embed_dim=32,
                mlp_ratio=(0.5, 4.0))
  torch.manual_seed(0)
  tanh_gelu = functools.partial(torch.nn.GELU, approximate='tanh')
  theirs = mlp_mixer.MlpMixer(**kwargs, act_layer=tanh_gelu).eval()
  with torch.no_grad():
    for p in theirs.parameters():
      p.add_(0.1 * torch.randn_like(p))  # Non-trivial head and LayerNorms.
  path = str(tmp_path / 'timm_mixer.pth')
  torch.save({'state_dict': theirs.state_dict()}, path)
  params = checkpoint.load_params(path)
  ours = models.MlpMixer(num_classes=CLASSES, patch_size=4, hidden_dim=32, num_blocks=2,
                         tokens_mlp_dim=16, channels_mlp_dim=128)
  images = np.random.default_rng(3).uniform(-1, 1, (2, RES, RES, 3)).astype(np.float32)
  with torch.no_grad():
    want = theirs(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
  got = np.asarray(ours.apply({'params': params}, images))
  assert np.abs(want).max() > 0.1
  np.testing.assert_allclose(got, want, atol=1e-5)

  torch.save({'blocks.0.attn.qkv.weight': torch.zeros(3, 3)}, str(tmp_path / 'vit.pth'))
  with pytest.raises(checkpoint.CheckpointError, match=r'vit\.pth: .*blocks\.0\.attn\.qkv'):
    checkpoint.load_params(str(tmp_path / 'vit.pth'))
