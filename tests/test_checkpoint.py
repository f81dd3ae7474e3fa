"""Official .npz interop: round trip, older layout, fine-tuning loads, bad input, cache copy."""

import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import checkpoint, download, models
from mixer_flax.checkpoint import CheckpointError
from mixer_flax.checkpoint import cli as checkpoint_cli
from mixer_flax.checkpoint import info as checkpoint_info

RES = 16  # Mixer-Ti_4 at 16 px: a 4x4 token grid.
CLASSES = 7


def _official_flat(params, prefix=''):
  """The released files' layout, written independently of checkpoint.flatten."""
  flat = {}
  for key, value in params.items():
    if isinstance(value, dict):
      flat.update(_official_flat(value, f'{prefix}{key}/'))
    else:
      flat[prefix + key] = np.asarray(value, np.float32)
  return flat


def _init(image_size, num_classes=CLASSES, **overrides):
  """A model and stand-in fresh params: its exact shapes, zeros (no slow RNG init on CPU)."""
  model = models.create_model('Mixer-Ti_4', num_classes=num_classes, **overrides)
  shapes = _shapes('Mixer-Ti_4', image_size, num_classes=num_classes, **overrides)
  return model, jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _random(shapes, seed):
  """Random non-zero params: kernels N(0, 1/fan_in), LayerNorm scales 1 + N(0, 0.1^2),
  biases N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)
  def leaf(path, s):
    name = path[-1].key
    x = rng.standard_normal(s.shape).astype(np.float32)
    if name == 'kernel':
      return x / np.float32(np.sqrt(np.prod(s.shape[:-1])))
    return np.float32(0.1) * x + np.float32(name == 'scale')
  return jax.tree_util.tree_map_with_path(leaf, shapes)


def _apply(model, params, images):
  return jax.jit(lambda p, x: model.apply({'params': p}, x, return_prelogits=True))(params, images)


def _shapes(name, image_size, num_classes=1000, **overrides):
  model = models.create_model(name, num_classes=num_classes, **overrides)
  x = jnp.zeros((1, image_size, image_size, 3))
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))['params']


@pytest.fixture(scope='module')
def ti4(tmp_path_factory):
  """Mixer-Ti_4 with every parameter (biases, LayerNorms, head) randomly non-zero."""
  model = models.create_model('Mixer-Ti_4', num_classes=CLASSES)
  params = _random(_shapes('Mixer-Ti_4', RES, num_classes=CLASSES), seed=0)
  path = str(tmp_path_factory.mktemp('ckpt') / 'Mixer-Ti_4.npz')
  np.savez(path, **_official_flat(params))
  return model, params, path


def _images(n, size, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_official_layout_loads_round_trips_and_gives_same_logits(ti4, tmp_path):
  model, params, path = ti4
  expected = _official_flat(params)
  loaded = checkpoint.load_npz(path)
  flat = checkpoint.flatten(loaded)
  assert flat.keys() == expected.keys()
  for key, value in expected.items():
    assert flat[key].dtype == np.float32 and np.array_equal(flat[key], value), key

  # save_npz writes the same flat float32 layout, bit for bit (also from jax/bfloat16 leaves).
  out = str(tmp_path / 'sub' / 'copy.npz')
  checkpoint.save_npz(out, jax.tree_util.tree_map(jnp.asarray, loaded))
  with np.load(out, allow_pickle=False) as npz:
    assert set(npz.files) == expected.keys()
    for key in npz.files:
      assert npz[key].dtype == np.float32 and npz[key].tobytes() == expected[key].tobytes()
  assert os.listdir(tmp_path / 'sub') == ['copy.npz']  # No temporary file left behind.
  checkpoint.save_npz(out, jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.bfloat16), loaded))
  assert checkpoint.flatten(checkpoint.load_npz(out))['stem/kernel'].dtype == np.float32

  # load_pretrained into a freshly initialised model, keeping the head: every value from the file.
  _, fresh = _init(RES)
  restored = checkpoint.load_pretrained(path=f'file://{path}', init_params=fresh, keep_head=True)
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(fresh)
  images = _images(3, RES)
  np.testing.assert_array_equal(_apply(model, restored, images)[0],
                                _apply(model, params, images)[0])


def test_older_layout_is_converted(ti4, tmp_path):
  _, params, path = ti4
  official = _official_flat(params)
  renames = {'stem': 'Mixer/embedding', 'pre_head_layer_norm': 'Mixer/encoder_norm',
             'head': 'Mixer/head'}
  legacy = {}
  for key, value in official.items():
    top, rest = key.split('/', 1)
    top = renames.get(top, top.replace('MixerBlock_', 'Mixer/encoderblock_'))
    legacy[f'{top}/{rest}'] = value
  assert 'Mixer/encoderblock_3/token_mixing/Dense_1/bias' in legacy
  legacy_path = str(tmp_path / 'legacy.npz')
  np.savez(legacy_path, **legacy)
  flat = checkpoint.flatten(checkpoint.load_npz(legacy_path))
  assert flat.keys() == official.keys()
  assert all(np.array_equal(flat[k], official[k]) for k in official)

  np.savez(str(tmp_path / 'other.npz'), **{'Transformer/encoder_norm/scale': np.ones(3, 'f4')})
  with pytest.raises(CheckpointError, match=r"other\.npz.*\['Transformer'\]"):
    checkpoint.load_npz(str(tmp_path / 'other.npz'))


@pytest.mark.parametrize('factor', [2, 3])
def test_higher_resolution_adaptation_is_exact(ti4, factor):
  """Logits (and pre-logits) on a KxK mosaic == mean over the K^2 tiles' originals."""
  model, params, path = ti4
  size = factor * RES
  overrides = checkpoint.finetune_overrides(model_name='Mixer-Ti_4', image_size=size,
                                            pretrained_image_size=RES)
  assert overrides == {'tokens_mlp_dim': factor * factor * 64}
  big_model = models.create_model('Mixer-Ti_4', num_classes=CLASSES, **overrides)
  init = _shapes('Mixer-Ti_4', size, num_classes=CLASSES, **overrides)
  adapted = checkpoint.load_pretrained(path=path, init_params=init, keep_head=True)
  tm = adapted['MixerBlock_2']['token_mixing']
  s, d = factor ** 2 * 16, factor ** 2 * 64
  shapes = [tm['Dense_0']['kernel'].shape, tm['Dense_0']['bias'].shape,
            tm['Dense_1']['kernel'].shape, tm['Dense_1']['bias'].shape]
  assert shapes == [(s, d), (d,), (d, s), (s,)]
  np.testing.assert_array_equal(adapted['head']['kernel'], params['head']['kernel'])

  tiles = _images(2 * factor * factor, RES, seed=factor).reshape(2, factor, factor, RES, RES, 3)
  mosaic = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(2, size, size, 3)  # Row-major tiles.
  logits, pre = _apply(big_model, adapted, mosaic)
  tile_logits, tile_pre = _apply(model, params, tiles.reshape(-1, RES, RES, 3))
  assert np.abs(tile_logits).max() > 0.5  # A non-trivial head.
  np.testing.assert_allclose(logits, tile_logits.reshape(2, -1, CLASSES).mean(1), atol=2e-5)
  np.testing.assert_allclose(pre, tile_pre.reshape(2, factor * factor, -1).mean(1), atol=2e-5)

  if factor == 2:  # Control: tile-contiguous block-diagonals (no row-major permutation) differ.
    naive = jax.tree_util.tree_map(np.asarray, adapted)
    for i in range(4):
      old, new = params[f'MixerBlock_{i}']['token_mixing'], naive[f'MixerBlock_{i}']['token_mixing']
      new['Dense_0']['kernel'] = np.kron(np.eye(4, dtype=np.float32), old['Dense_0']['kernel'])
      new['Dense_1']['kernel'] = np.kron(np.eye(4, dtype=np.float32), old['Dense_1']['kernel'])
      new['Dense_1']['bias'] = np.tile(old['Dense_1']['bias'], 4)
    wrong, _ = _apply(big_model, naive, mosaic)
    assert np.abs(wrong - tile_logits.reshape(2, -1, CLASSES).mean(1)).max() > 1e-2


def test_fine_tuning_starts_from_the_models_fresh_head(ti4):
  """As vit_jax's load_pretrained: the model's (zero) head, whatever the class count; the
  checkpoint's head only with keep_head=True and the same class count."""
  _, params, path = ti4
  for classes in (3, CLASSES):
    _, fresh = _init(RES, num_classes=classes)
    fresh['head']['bias'] = np.full((classes,), -2.0, np.float32)  # As head_bias_init=-2 gives.
    restored = checkpoint.load_pretrained(path=path, init_params=fresh)
    np.testing.assert_array_equal(restored['head']['kernel'], np.zeros((128, classes)))
    np.testing.assert_array_equal(restored['head']['bias'], np.full((classes,), -2.0))
    np.testing.assert_array_equal(restored['stem']['kernel'], params['stem']['kernel'])
    kept = checkpoint.load_pretrained(path=path, init_params=fresh, keep_head=True)
    want = params['head'] if classes == CLASSES else fresh['head']
    np.testing.assert_array_equal(kept['head']['kernel'], want['kernel'])
  assert np.abs(params['head']['kernel']).max() > 0
  # A pre-logits model (no head) drops the checkpoint's head.
  _, headless = _init(RES, num_classes=0)
  assert 'head' not in checkpoint.load_pretrained(path=path, init_params=headless)
  with pytest.raises(CheckpointError, match='holds no values'):  # Shapes only: cannot swap heads.
    checkpoint.load_pretrained(path=path, init_params=_shapes('Mixer-Ti_4', RES, num_classes=3))


def _write(path, flat):
  np.savez(path, **flat)
  return str(path)


def test_bad_files_fail_clearly(ti4, tmp_path):
  _, _, path = ti4
  data = open(path, 'rb').read()
  truncated = tmp_path / 'truncated.npz'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(CheckpointError, match=r'truncated\.npz: not a readable \.npz'):
    checkpoint.load_npz(str(truncated))
  corrupt = tmp_path / 'corrupt.npz'
  corrupt.write_bytes(data[:200] + bytes(300) + data[500:])
  with pytest.raises(CheckpointError, match=r'corrupt\.npz'):
    checkpoint.load_pretrained(path=str(corrupt), init_params=_init(RES)[1])
  pickled = _write(tmp_path / 'pickled.npz', {'stem/kernel': np.array([{'x': 1}], dtype=object)})
  with pytest.raises(CheckpointError, match=r"pickled\.npz: array 'stem/kernel' is a pickled"):
    checkpoint.load_npz(pickled)
  ints = _write(tmp_path / 'ints.npz', {'stem/bias': np.arange(3)})
  with pytest.raises(CheckpointError, match=r"'stem/bias' has dtype int64"):
    checkpoint.load_npz(ints)
  npy = tmp_path / 'single.npz'
  with open(npy, 'wb') as f:
    np.save(f, np.ones(3, np.float32))
  with pytest.raises(CheckpointError, match=r'single\.npz: holds a single array'):
    checkpoint.load_npz(str(npy))
  pickle_file = tmp_path / 'pickle.npz'
  with open(pickle_file, 'wb') as f:
    pickle.dump({'stem/kernel': np.ones(3)}, f)
  with pytest.raises(CheckpointError, match=r'pickle\.npz: not a readable .*pickled'):
    checkpoint.load_npz(str(pickle_file))
  with pytest.raises(FileNotFoundError, match='nothere.npz'):
    checkpoint.load_npz(str(tmp_path / 'nothere.npz'))


def test_checkpoint_that_does_not_fit_fails_clearly(ti4, tmp_path):
  _, params, path = ti4
  flat = _official_flat(params)
  # Another variant: Mixer-Ti_16 (width 192, patch 16) at 224 px into Mixer-Ti_4.
  other = _write(tmp_path / 'ti16.npz', {k: np.zeros(v.shape, np.float32) for k, v in
                                         checkpoint.flatten(_shapes('Mixer-Ti_16', 224)).items()})
  with pytest.raises(CheckpointError, match=r"ti16\.npz: parameter 'stem/kernel' has shape "
                                            r'\(16, 16, 3, 192\) .* expects \(4, 4, 3, 128\)'):
    checkpoint.load_pretrained(path=other, init_params=_init(RES)[1])
  missing = _write(tmp_path / 'missing.npz', {k: v for k, v in flat.items()
                                              if k != 'MixerBlock_2/LayerNorm_1/scale'})
  with pytest.raises(CheckpointError, match=r"missing\.npz: missing .*'MixerBlock_2/LayerNorm_1/"):
    checkpoint.load_pretrained(path=missing, init_params=_init(RES)[1])
  deeper = dict(flat, **{k.replace('MixerBlock_3', 'MixerBlock_4'): v for k, v in flat.items()
                         if k.startswith('MixerBlock_3/')})
  with pytest.raises(CheckpointError, match=r"'MixerBlock_4/LayerNorm_0/bias'.* not in the model"):
    checkpoint.load_pretrained(path=_write(tmp_path / 'deep.npz', deeper),
                               init_params=_init(RES)[1])
  # Another resolution (16 -> 24 px: 16 -> 36 tokens) with a token MLP of a third width.
  with pytest.raises(CheckpointError, match=r"'MixerBlock_0/token_mixing/Dense_0/kernel' has shape "
                                            r'\(16, 64\) .* expects \(36, 144\).*=64'):
    checkpoint.load_pretrained(path=path, init_params=_shapes('Mixer-Ti_4', 24, num_classes=CLASSES,
                                                              tokens_mlp_dim=144))


def test_describe_and_inspect_script(ti4, capsys, tmp_path):
  _, _, path = ti4
  info = checkpoint_info.describe(checkpoint.load_npz(path))
  assert info == {'variant': 'Mixer-Ti_4', 'patch_size': 4, 'hidden_dim': 128, 'num_blocks': 4,
                  'num_tokens': 16, 'tokens_mlp_dim': 64, 'channels_mlp_dim': 512,
                  'image_size': 16, 'num_classes': CLASSES,
                  'num_params': models.num_params(ti4[1]), 'dtype': 'float32'}
  b16 = checkpoint_info.describe(_shapes('Mixer-B_16', 224, num_classes=21843))
  assert (b16['variant'], b16['image_size'], b16['num_classes'], b16['num_params']) == (
      'Mixer-B_16', 224, 21843, 75_908_739)
  l16 = checkpoint_info.describe(_shapes('Mixer-L_16', 448, tokens_mlp_dim=2048))
  assert l16['variant'] == 'Mixer-L_16 (token MLP widened 4x for 2x the resolution)'
  assert l16['image_size'] == 448 and l16['num_tokens'] == 784

  assert checkpoint_cli.inspect_main([path]) == 0
  out = capsys.readouterr().out
  for line in ('variant:      Mixer-Ti_4', 'resolution:   16 px', f'head classes: {CLASSES}',
               f'parameters:   {models.num_params(ti4[1]):,}', 'dtype:        float32'):
    assert line in out
  (tmp_path / 'junk.npz').write_bytes(b'not a zip')
  with pytest.raises(SystemExit, match='^1$'):  # entry.command: one line, status 1
    checkpoint_cli.inspect_main([str(tmp_path / 'junk.npz')])
  assert 'junk.npz: not a readable .npz' in capsys.readouterr().err


def test_import_without_tensorflow(ti4):
  code = ('import sys; from mixer_flax import checkpoint, download; '
          'from mixer_flax.checkpoint import info, timm_import; '
          f'checkpoint.load_params({ti4[2]!r}); '
          "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
  root = os.path.join(os.path.dirname(__file__), '..')
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]))
  subprocess.run([sys.executable, '-c', code], check=True, env=env, cwd=root)


def test_fetch_copies_into_cache_once(tmp_path, monkeypatch, capsys):
  src = tmp_path / 'remote' / 'Mixer-X.npz'
  src.parent.mkdir()
  src.write_bytes(os.urandom(3 << 20))
  monkeypatch.setenv('MIXER_FLAX_CACHE', str(tmp_path / 'cache'))
  local = download.fetch(f'file://{src}')
  assert local == str(tmp_path / 'cache' / 'file' / str(src).lstrip('/'))
  assert open(local, 'rb').read() == src.read_bytes()
  assert '3.00M/3.00M' in capsys.readouterr().err  # tqdm progress bar.
  assert os.listdir(os.path.dirname(local)) == ['Mixer-X.npz']

  def no_copy(url):
    raise AssertionError(f'copied {url} again')
  monkeypatch.setattr(download, '_open_source', no_copy)
  assert download.fetch(str(src), progress=False) == local  # Cached: no second copy.
  monkeypatch.undo()
  with pytest.raises(FileNotFoundError, match='absent.npz'):
    download.fetch(f'file://{tmp_path}/absent.npz', directory=str(tmp_path / 'c2'))
  assert not any(files for _, _, files in os.walk(tmp_path / 'c2'))  # No partial file.
  assert download.cache_path('https://storage.googleapis.com/mixer_models/imagenet1k/Mixer-B_16.npz',
                             directory='/c') == download.cache_path(
                                 'gs://mixer_models/imagenet1k/Mixer-B_16.npz', directory='/c')


def test_inconsistent_file_names_first_disagreeing_key(ti4, tmp_path, capsys):
  """Blocks that disagree fail in describe/inspect/load_model with the key and both shapes."""
  _, params, _ = ti4
  flat = _official_flat(params)
  flat['MixerBlock_2/channel_mixing/Dense_0/kernel'] = np.zeros((128, 256), np.float32)
  flat['MixerBlock_3/channel_mixing/Dense_0/bias'] = np.zeros(256, np.float32)
  path = _write(tmp_path / 'mixed.npz', flat)
  message = (r"mixed\.npz: parameter 'MixerBlock_2/channel_mixing/Dense_0/kernel' has shape "
             r'\(128, 256\) but .* give \(128, 512\)')
  with pytest.raises(CheckpointError, match=message):
    checkpoint_info.describe(checkpoint.load_npz(path), source=path)
  with pytest.raises(CheckpointError, match=message):
    checkpoint.load_model(path)
  with pytest.raises(SystemExit, match='^1$'):
    checkpoint_cli.inspect_main([path])
  assert "'MixerBlock_2/channel_mixing/Dense_0/kernel' has shape (128, 256)" in (
      capsys.readouterr().err)
