"""eval/classification.py and the evaluate/predict command lines: exact accuracy, top-k."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from mixer_flax import checkpoint, models
from mixer_flax.checkpoint import info as checkpoint_info
from mixer_flax.checkpoint import metadata
from mixer_flax.data import pipeline
from mixer_flax.eval import classification, cli, inputs, labels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_checkpoint(path, name, num_classes, size, seed=0):
  model = models.create_model(name, num_classes=num_classes)
  params = model.init(jax.random.PRNGKey(seed), np.zeros((1, size, size, 3), np.float32))['params']
  params = jax.tree_util.tree_map(np.asarray, params)
  rng = np.random.default_rng(seed)
  params['head']['kernel'] = rng.normal(size=params['head']['kernel'].shape).astype(np.float32)
  params['head']['bias'] = rng.normal(size=params['head']['bias'].shape).astype(np.float32)
  checkpoint.save_npz(path, params)
  return model, params


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  """6 classes, 19 test images of 16x16 (an odd count: the last batch is padded)."""
  root = tmp_path_factory.mktemp('folder')
  rng = np.random.default_rng(0)
  images, labels = [], []
  classes = [f'c{i}' for i in range(6)]
  for split, n in (('train', 6), ('test', 19)):
    for j in range(n):
      label = j % 6
      image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
      d = root / split / classes[label]
      d.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(d / f'{j}.png')
      if split == 'test':
        images.append(image)
        labels.append(label)
  return root, np.stack(images), np.array(labels)


def test_evaluate_matches_hand_computed_accuracy(folder, tmp_path):
  root, images, labels = folder
  path = str(tmp_path / 'ckpt.npz')
  model, params = _random_checkpoint(path, 'Mixer-Ti_4', 6, 16)
  logits = np.asarray(model.apply({'params': params}, (images.astype(np.float32) - 127.5) / 127.5))
  top1 = np.mean(logits.argmax(-1) == labels)
  top5 = np.mean([labels[i] in np.argsort(-logits[i])[:5] for i in range(len(labels))])
  assert 0 < top1 < 1 and top5 > top1  # the check below is not trivially satisfied

  metrics = cli.evaluate_main([
      '--checkpoint', path, '--dataset', 'image_folder', '--folder_root', str(root),
      '--split', 'test', '--eval_mode', 'resize', '--batch', '8', '--no_progress'])
  assert metrics['eval_count'] == 19
  assert metrics['model'] == 'Mixer-Ti_4' and metrics['image_size'] == 16
  assert metrics['eval_accuracy'] == pytest.approx(top1, abs=1e-9)
  assert metrics['eval_top5_accuracy'] == pytest.approx(top5, abs=1e-9)


def test_folder_classes_are_matched_to_the_checkpoints_by_name(folder, tmp_path, capsys):
  """A folder whose sorted class names are not the training order: the head is read in the
  checkpoint's order (its final.json), or the run stops naming classes it does not know."""
  root, images, labels_ = folder
  path = str(tmp_path / 'ckpt.npz')
  model, params = _random_checkpoint(path, 'Mixer-Ti_4', 6, 16)
  trained_order = [f'c{i}' for i in (3, 0, 5, 1, 4, 2)]  # head column j is class trained_order[j]
  metadata.save(path, metadata.make(model_name='Mixer-Ti_4', classes=trained_order,
                                    dataset='image_folder', image_size=16, eval_mode='resize',
                                    eval_resize=16))
  logits = np.asarray(model.apply({'params': params}, (images.astype(np.float32) - 127.5) / 127.5))
  predicted = [int(trained_order[j][1:]) for j in logits.argmax(-1)]  # folder label of 'c<k>'
  top1 = np.mean(np.array(predicted) == labels_)
  assert top1 != pytest.approx(np.mean(logits.argmax(-1) == labels_))  # the order matters here
  metrics = cli.evaluate_main(['--checkpoint', path, '--dataset', 'image_folder', '--folder_root',
                               str(root), '--batch', '8', '--no_progress'])
  assert metrics['eval_accuracy'] == pytest.approx(top1, abs=1e-9)
  assert metrics['eval_mode'] == 'resize'  # from the metadata
  assert 'matched by name' in capsys.readouterr().err

  metadata.save(path, metadata.make(model_name='Mixer-Ti_4', classes=[f'd{i}' for i in range(6)],
                                    dataset='image_folder', image_size=16, eval_mode='resize',
                                    eval_resize=16))
  with pytest.raises(SystemExit, match='^1$'):
    cli.evaluate_main(['--checkpoint', path, '--dataset', 'image_folder', '--folder_root',
                       str(root), '--no_progress'])
  err = capsys.readouterr().err
  assert 'only in the data: c0, c1, c2, c3, c4, c5; only in the checkpoint: d0, d1' in err


def test_head_order_matches_names_and_keeps_unused_columns():
  assert labels.head_order(['a', 'b', 'c'], ['a', 'b', 'c'], checkpoint='x', dataset='y') is None
  assert labels.head_order(['a', 'b', 'c'], ['a', 'b'], checkpoint='x', dataset='y') is None
  assert labels.head_order(['b', 'c', 'a'], ['a', 'b'], checkpoint='x', dataset='y') == [2, 0, 1]
  with pytest.raises(ValueError, match='only in the data: z; only in the checkpoint: c'):
    labels.head_order(['a', 'b', 'c'], ['a', 'b', 'z'], checkpoint='x', dataset='y')


def test_infer_architecture_official_shapes():
  model = models.create_model('Mixer-B_16', num_classes=1000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, 224, 224, 3))))
  arch = checkpoint_info.infer_architecture(shapes['params'])
  assert arch == dict(model_name='Mixer-B_16', num_classes=1000, image_size=224, overrides={})
  with pytest.raises(ValueError, match='image_size=384'):
    checkpoint_info.infer_architecture(shapes['params'], image_size=384)


def test_real_labels_exclude_examples_without_labels(monkeypatch):
  """ImageNet ReaL: multi-hot targets, examples with an empty label set are not scored."""

  model = models.create_model('Mixer-Ti_4', num_classes=5)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 3), np.float32))['params']
  params = jax.tree_util.tree_map(np.asarray, params)
  params['head']['bias'] = np.arange(5, dtype=np.float32)  # every prediction is class 4
  n = jax.local_device_count()
  labels = np.zeros((n, 1, 5), np.float32)
  labels[0, 0, [1, 4]] = 1  # correct (4 is among the real labels)
  if n > 1:
    labels[1, 0, 2] = 1  # wrong
  # All other examples have no real label: excluded.
  batch = {'images': np.zeros((n, 1, 8, 8, 3), np.float32), 'labels': labels,
           'mask': np.ones((n, 1), np.float32)}
  monkeypatch.setattr(pipeline, 'get_eval_iterator', lambda config: iter([batch]))
  config = inputs.eval_config(dataset='imagenet2012_real', split='validation', image_size=8,
                              batch=n, num_classes=5)
  assert config.label_key == 'real_label'
  metrics = classification.evaluate_params(config, model, params)
  assert metrics['eval_count'] == min(n, 2)
  assert metrics['eval_accuracy'] == pytest.approx(1 / min(n, 2))


def test_predict_names_a_real_photo(tmp_path):
  """A random-weight 1000-class model on sklearn's china.jpg: valid ImageNet-1k names."""
  from sklearn.datasets import load_sample_image

  from mixer_flax.eval import labels

  photo = str(tmp_path / 'china.jpg')
  Image.fromarray(load_sample_image('china.jpg')).save(photo)
  path = str(tmp_path / 'ti16.npz')
  _random_checkpoint(path, 'Mixer-Ti_16', 1000, 224)
  results = cli.predict_main(['--checkpoint', path, '--top_k', '5', photo, photo])
  names = labels.imagenet1k_names()
  assert len(names) == 1000 and len(set(names)) == 1000
  assert names[0].startswith('tench') and labels.imagenet1k_synsets()[0] == 'n01440764'
  assert len(results) == 2 and results[0]['top_k'] == results[1]['top_k']
  preds = results[0]['top_k']
  assert len(preds) == 5 and len({p['index'] for p in preds}) == 5
  for p in preds:
    assert isinstance(p['name'], str) and p['name'] == names[p['index']]
  probs = [p['prob'] for p in preds]
  assert all(0 < q <= 1 for q in probs) and probs == sorted(probs, reverse=True)
  assert sum(probs) <= 1 + 1e-9


def _require_timm_data():
  """Skips without timm's package data (fails instead under MIXER_REQUIRE_TORCH=1, as in CI)."""
  from mixer_flax.eval import labels

  if labels.imagenet21k_names() is None:
    if os.environ.get('MIXER_REQUIRE_TORCH') == '1':
      pytest.fail('MIXER_REQUIRE_TORCH=1 but timm (it ships the ImageNet-21k names) is absent')
    pytest.skip('timm not installed: ImageNet-21k classes stay indices')
  return labels


def test_class_names_21k_and_custom(monkeypatch):
  labels = _require_timm_data()
  names, note = labels.class_names(21843)
  synsets = labels.imagenet21k_synsets()
  assert note is None and len(names) == len(synsets) == len(set(synsets)) == 21843
  assert synsets == sorted(synsets)  # The released heads' order: sorted WordNet ids.
  assert names[synsets.index('n01440764')] == 'tench, Tinca tinca'
  monkeypatch.setattr(labels, '_timm_info_dir', lambda: None)  # As without timm.
  names, note = labels.class_names(21843)
  assert names[7] == 'imagenet21k class 7' and 'timm is not installed' in note
  monkeypatch.undo()
  names, note = labels.class_names(3, dataset_names=['a', 'b', 'c'])
  assert names == ['a', 'b', 'c'] and note is None
  with pytest.raises(ValueError, match='3-class head'):
    labels.class_names(3, dataset_names=['a', 'b'])



def test_predict_names_imagenet21k_classes(tmp_path, capsys, random_mixer_params):
  labels = _require_timm_data()
  model = models.create_model('Mixer-Ti_4', num_classes=labels.IMAGENET21K_CLASSES)
  params = random_mixer_params(model, 16)
  tabby = labels.imagenet21k_synsets().index('n02123045')
  params['head']['bias'] = np.zeros_like(params['head']['bias'])
  params['head']['bias'][tabby] = 50.0  # This head says "tabby" for every image.
  path = str(tmp_path / 'i21k.npz')
  checkpoint.save_npz(path, params)
  Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(tmp_path / 'grey.png')
  results = cli.predict_main(['--checkpoint', path, '--top_k', '2', str(tmp_path / 'grey.png')])
  assert results[0]['top_k'][0]['index'] == tabby
  assert results[0]['top_k'][0]['name'] == 'tabby, tabby cat'
  assert 'tabby, tabby cat' in capsys.readouterr().out
