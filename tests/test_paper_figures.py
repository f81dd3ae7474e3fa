"""Fig. 5 / stem / Fig. 4 figures: the panels show the weights they name, in the stated order."""

import json
import os

import matplotlib.image
import numpy as np
import pytest
from PIL import Image

from mixer_flax import checkpoint, models
from mixer_flax.paper import fig4, figures, reproduce, units

# --- ordering and pairing, against constructed units whose answer is known ----------------------

def _grating(n, ky, kx, phase=0.0):
  r, c = np.meshgrid(np.arange(n), np.arange(n), indexing='ij')
  return np.cos(2 * np.pi * (ky * r + kx * c) / n + phase)


def test_filter_frequency_of_pure_gratings_is_their_radial_frequency():
  waves = [(0, 1), (1, 1), (0, 2), (1, 2), (2, 3)]
  images = np.stack([_grating(8, ky, kx, 0.3) for ky, kx in waves]
                    + [np.full((8, 8), 2.0), np.zeros((8, 8))])
  expected = [np.hypot(ky, kx) / 8 for ky, kx in waves] + [0.0, 0.0]
  np.testing.assert_allclose(units.filter_frequency(images), expected, atol=1e-12)
  rgb = np.stack([_grating(8, 1, 2), 3 * _grating(8, 1, 2), -_grating(8, 1, 2)], -1)[None]
  np.testing.assert_allclose(units.filter_frequency(rgb), [np.hypot(1, 2) / 8])


def test_pair_units_pairs_exact_inverses_and_sorts_pairs_by_frequency():
  rng = np.random.default_rng(0)
  waves = [(2, 3), (0, 1), (1, 2), (0, 3), (1, 1), (0, 2)]  # Radii 3.6, 1, 2.2, 3, 1.4, 2.
  images = []
  for ky, kx in waves:
    phase = rng.uniform(0, 2 * np.pi)
    images += [rng.uniform(0.5, 2) * _grating(8, ky, kx, phase),
               -rng.uniform(0.5, 2) * _grating(8, ky, kx, phase)]
  images.append(_grating(8, 4, 4))  # Odd one out: the highest frequency, alone at the end.
  perm = rng.permutation(len(images))
  pairs = units.pair_units(np.stack(images)[perm])
  where = {int(old): new for new, old in enumerate(perm)}
  by_radius = sorted(range(len(waves)), key=lambda w: np.hypot(*waves[w]))
  expected = [tuple(sorted((where[2 * w], where[2 * w + 1]))) for w in by_radius]
  assert pairs == expected + [(where[len(images) - 1],)]


# --- a real checkpoint written here --------------------------------------------------------------

@pytest.fixture(scope='module')
def digits_checkpoint(tmp_path_factory, random_mixer_params):
  """A Mixer-Ti/4 .npz at 16 px (4x4 token grid, D_S = 64, C = 128) and its flat params."""
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  params = random_mixer_params(model, 16, seed=1)
  path = str(tmp_path_factory.mktemp('ckpt') / 'ti4.npz')
  checkpoint.save_npz(path, params)
  return path, checkpoint.flatten(checkpoint.load_params(path))


def _panels(fig):
  """`[(label, AxesImage)]` in reading order: top to bottom, then left to right."""
  axes = [ax for ax in fig.axes if ax.images]
  axes.sort(key=lambda ax: (-round(ax.get_position().y0, 4), ax.get_position().x0))
  return [(ax.get_label(), ax.images[0]) for ax in axes]


def _png_cell(png, image, row, col):
  """The PNG pixel at the centre of data cell (row, col) of `image` (origin upper)."""
  box = image.axes.get_window_extent()
  rows, cols = image.get_array().shape[:2]
  x = box.x0 + (col + 0.5) * box.width / cols
  y = box.y1 - (row + 0.5) * box.height / rows
  return png[int(png.shape[0] - y), int(x)]


def test_fig5_panels_are_the_token_mixing_columns_in_pair_order(digits_checkpoint, tmp_path):
  path, flat = digits_checkpoint
  fig = figures.token_mixing_figure(checkpoint.load_params(path), blocks=(0, 1, -1),
                                    max_units=0, columns=8, source=path)
  panels = _panels(fig)
  assert len(panels) == 3 * 64
  for block in (0, 1, 3):  # -1 is the last of the 4 blocks.
    key = f'MixerBlock_{block}/token_mixing/Dense_0/kernel'
    shown = [(label, im) for label, im in panels if label.startswith(key)]
    kernel = flat[key]
    order = [int(label.split(', ')[1].rstrip(']')) for label, _ in shown]
    assert order == units.display_order(units.pair_units(kernel.T.reshape(64, 4, 4)))
    assert sorted(order) == list(range(64))
    for j, (_, im) in zip(order, shown):
      column = kernel[:, j].reshape(4, 4)  # Tokens are row-major.
      np.testing.assert_array_equal(im.get_array(), column)
      peak = np.abs(column).max()
      np.testing.assert_allclose(im.get_clim(), (-peak, peak), rtol=1e-6)
    boxes = [im.axes.get_position() for _, im in shown]
    for first, second in zip(boxes[::2], boxes[1::2]):  # Each pair side by side in one row.
      assert first.y0 == pytest.approx(second.y0) and first.x1 < second.x0
  assert not any('MixerBlock_2' in label for label, _ in panels)
  # The PNG itself: each token cell has the grey level of its weight on [-max|w|, max|w|].
  png_path = figures.save(fig, str(tmp_path / 'fig5.png'), dpi=fig.dpi)
  png = matplotlib.image.imread(png_path)[..., :3]
  for _, im in panels[:16]:
    w = im.get_array()
    grey = (w + np.abs(w).max()) / (2 * np.abs(w).max())
    for r in range(4):
      for c in range(4):
        np.testing.assert_allclose(_png_cell(png, im, r, c), [grey[r, c]] * 3, atol=2.5 / 255)


def test_stem_panels_are_rgb_filters_lowest_frequency_first(digits_checkpoint, tmp_path):
  path, flat = digits_checkpoint
  fig = figures.stem_figure(checkpoint.load_params(path), max_filters=20, source=path)
  panels = _panels(fig)
  assert len(panels) == 20
  kernel = flat['stem/kernel']  # (4, 4, 3, 128)
  channels = [int(label.split(', ')[1].rstrip(']')) for label, _ in panels]
  # Spectral centroid over the 4x4 grid, RGB power summed, computed here from the DFT.
  power = (np.abs(np.fft.fft2(kernel, axes=(0, 1))) ** 2).sum(2)
  radius = np.hypot(*np.meshgrid(np.fft.fftfreq(4), np.fft.fftfreq(4), indexing='ij'))
  freq = (power * radius[..., None]).sum((0, 1)) / power.sum((0, 1))
  assert channels == list(np.argsort(freq, kind='stable')[:20])
  png = matplotlib.image.imread(figures.save(fig, str(tmp_path / 's.png'), dpi=fig.dpi))
  for c, (_, im) in zip(channels, panels):
    rgb = 0.5 + kernel[..., c] / (2 * np.abs(kernel[..., c]).max())
    np.testing.assert_allclose(im.get_array(), rgb, rtol=1e-6)
    assert im.get_array().min() >= 0 and im.get_array().max() <= 1
    np.testing.assert_allclose(_png_cell(png, im, 1, 2)[:3], rgb[1, 2], atol=1.5 / 255)


def test_cli_writes_deterministic_pngs_and_reports_bad_input(digits_checkpoint, tmp_path, capsys):
  path, _ = digits_checkpoint
  out = tmp_path / 'figs'
  assert figures.main(['--checkpoint', path, '--out', str(out), '--units', '16']) == 0
  assert sorted(os.listdir(out)) == ['fig5_token_mixing.png', 'stem_filters.png']
  first = {n: (out / n).read_bytes() for n in os.listdir(out)}
  assert figures.main(['--checkpoint', path, '--out', str(out), '--units', '16']) == 0
  assert first == {n: (out / n).read_bytes() for n in os.listdir(out)}
  with Image.open(out / 'fig5_token_mixing.png') as image:
    assert image.format == 'PNG' and image.width > 3 * 8 * 30
  capsys.readouterr()
  other = tmp_path / 'not_mixer.npz'
  checkpoint.save_npz(str(other), {'encoder': {'kernel': np.ones((2, 2), np.float32)}})
  stem_only = tmp_path / 'stem_only.npz'
  checkpoint.save_npz(str(stem_only), {'stem': {'kernel': np.ones((4, 4, 3, 8), np.float32)}})
  for argv, needle in ((['--checkpoint', str(tmp_path / 'missing.npz')], 'missing.npz'),
                       (['--checkpoint', str(other)], 'not_mixer.npz'),
                       (['--checkpoint', str(stem_only)],
                        "'MixerBlock_0/token_mixing/Dense_0/kernel' is missing"),
                       (['--checkpoint', path, '--blocks', '4'], '--blocks: block 4')):
    with pytest.raises(SystemExit, match='^1$'):  # entry.command: one line, status 1
      figures.main(argv + ['--out', str(tmp_path / 'x')])
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and needle in err and '\n' not in err


def test_timm_safetensors_file_gives_the_same_panels(digits_checkpoint, tmp_path):
  pytest.importorskip('safetensors')
  from mixer_flax.checkpoint import timm as export_timm

  path, flat = digits_checkpoint
  timm_path = str(tmp_path / 'ti4.safetensors')
  export_timm.save_state_dict(timm_path, export_timm.to_timm_state_dict(
      checkpoint.load_params(path)))
  assert figures.main(['--checkpoint', timm_path, '--out', str(tmp_path / 'out'), '--units', '8',
                       '--stem_filters', '8']) == 0
  fig = figures.token_mixing_figure(checkpoint.load_params(timm_path), blocks=(2,), max_units=8)
  for label, im in _panels(fig):
    j = int(label.split(', ')[1].rstrip(']'))
    np.testing.assert_allclose(
        im.get_array(), flat['MixerBlock_2/token_mixing/Dense_0/kernel'][:, j].reshape(4, 4))


def test_non_square_token_grid(tmp_path, random_mixer_params, capsys):
  model = models.create_model('Mixer-Ti_4', num_classes=0)
  path = str(tmp_path / 'wide.npz')
  checkpoint.save_npz(path, random_mixer_params(model, (16, 24)))  # 4x6 tokens, row-major.
  with pytest.raises(SystemExit, match='^1$'):
    figures.main(['--checkpoint', path, '--out', str(tmp_path)])
  assert '--token_grid' in capsys.readouterr().err
  fig = figures.token_mixing_figure(checkpoint.load_params(path), blocks=(0,), max_units=4,
                                    grid=(4, 6))
  kernel = checkpoint.flatten(checkpoint.load_params(path))['MixerBlock_0/token_mixing/'
                                                            'Dense_0/kernel']
  for label, im in _panels(fig):
    j = int(label.split(', ')[1].rstrip(']'))
    np.testing.assert_array_equal(im.get_array(), kernel[:, j].reshape(4, 6))


# --- Fig. 4 from a results file ------------------------------------------------------------------

def _permutation_results(root, *, steps=20):
  """A results file and runs laid out as `reproduce_tables.py --table permutation` writes them."""
  results = {'original': 0.9, 'patch_pixel': 0.875, 'global_pixel': 0.5,
             'original_same_start': 0.9, 'patch_pixel_same_start': 0.9,
             'max_abs_weight_diff': 1e-6, 'prediction_agreement': 1.0, 'steps': steps}
  (root / 'table_permutation.json').write_text(json.dumps(results))
  losses = {}
  for i, name in enumerate(fig4.LABELS):
    run = root / 'permutation' / f'{name}_{steps}steps'
    run.mkdir(parents=True)
    losses[name] = [2.0 / (i + 1 + s) for s in range(0, steps + 1, 5)]
    rows = [{'step': s, 'train_loss': v} for s, v in zip(range(0, steps + 1, 5), losses[name])]
    rows.append({'step': steps, 'eval_accuracy': 0.5})
    (run / 'metrics.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
  inputs = {}
  for i, kind in enumerate(('original', 'patch_pixel', 'global_pixel')):
    folder = root / 'permutation' / 'data' / kind / 'test' / '3'
    folder.mkdir(parents=True)
    inputs[kind] = np.arange(256, dtype=np.uint8).reshape(16, 16)[::-1 if i else 1]
    Image.fromarray(inputs[kind]).save(folder / '0007.png')
    Image.fromarray(inputs[kind] // 2).save(folder / '0009.png')
  return results, losses, inputs


def test_fig4_draws_the_results_file(tmp_path):
  results, losses, inputs = _permutation_results(tmp_path)
  fig = fig4.permutation_figure(str(tmp_path / 'table_permutation.json'))
  names = [n for n in fig4.LABELS if n in results]
  bars = next(ax for ax in fig.axes if ax.get_title() == 'Test accuracy')
  np.testing.assert_allclose([p.get_height() for p in bars.patches],
                             [100 * results[n] for n in names])
  assert [t.get_text() for t in bars.get_xticklabels()] == [fig4.LABELS[n] for n in names]
  curves = next(ax for ax in fig.axes if ax.get_title() == 'Training loss')
  assert [line.get_label() for line in curves.lines] == [fig4.LABELS[n] for n in names]
  for line, name in zip(curves.lines, names):
    np.testing.assert_allclose(line.get_ydata(), losses[name])
    assert line.get_linestyle() == ('--' if 'same_start' in name else '-')
  shown = {ax.get_label(): ax.images[0].get_array() for ax in fig.axes if ax.images}
  assert list(shown) == ['input/original', 'input/patch_pixel', 'input/global_pixel']
  for kind, image in inputs.items():  # The first test file (3/0007.png) of every folder.
    np.testing.assert_array_equal(shown[f'input/{kind}'], image)


def test_fig4_without_runs_and_bad_files(tmp_path, capsys):
  (tmp_path / 'table_permutation.json').write_text(json.dumps({'original': 0.5}))
  fig = fig4.permutation_figure(str(tmp_path / 'table_permutation.json'))
  assert [ax.get_title() for ax in fig.axes] == ['Test accuracy']
  (tmp_path / 'other.json').write_text(json.dumps({'accuracy': 0.5}))
  for name, needle in (('other.json', 'holds no permutation results'),
                       ('absent.json', 'do not exist')):
    argv = ['--permutation_results', str(tmp_path / name), '--out', str(tmp_path)]
    with pytest.raises(SystemExit, match='^1$'):
      figures.main(argv)
    assert needle in capsys.readouterr().err


def test_reproduce_permutation_writes_steps_and_fig4(tmp_path, monkeypatch):
  from mixer_flax.paper import permutation_experiment

  monkeypatch.setattr(permutation_experiment, 'run_experiment', lambda base, workdir: {
      'original': 0.75, 'patch_pixel': 0.75, 'global_pixel': 0.25})
  reproduce.main(['--table', 'permutation', '--steps', '7', '--out', str(tmp_path)])
  assert json.loads((tmp_path / 'table_permutation.json').read_text())['steps'] == 7
  with Image.open(tmp_path / 'fig4_permutation.png') as image:
    assert image.format == 'PNG'
