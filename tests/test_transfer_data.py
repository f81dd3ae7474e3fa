"""Every VTAB-1k task through the real input pipeline on tfds mock data (no network).

Split sizes are computed by tfds from the catalog sizes of each dataset (transfer_mock), and
must give 800 / 200 / 1000 training examples and the test-set sizes of the VTAB paper; the
labels of the first training batch must equal a NumPy reimplementation of the label maps
applied to the raw examples.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds
import transfer_mock

from mixer_flax.data import pipeline
from mixer_flax.transfer import __main__ as cli
from mixer_flax.transfer import check, suite, tasks, vtab

# Test-set sizes of VTAB-1k (Zhai et al. 2019, table of the 19 tasks).
VTAB_TEST_SIZES = {
    'caltech101': 6084, 'cifar100': 10000, 'dtd': 1880, 'oxford_flowers102': 6149,
    'oxford_iiit_pet': 3669, 'sun397': 21750, 'svhn': 26032, 'patch_camelyon': 32768,
    'eurosat': 5400, 'resisc45': 6300, 'diabetic_retinopathy': 42670, 'clevr_count': 15000,
    'clevr_distance': 15000, 'dmlab': 22735, 'kitti_distance': 711, 'dsprites_location': 73728,
    'dsprites_orientation': 73728, 'smallnorb_azimuth': 12150, 'smallnorb_elevation': 12150,
}
BATCH = 8


def numpy_label(task, ex):
  """The VTAB label of a raw (not encoded) example, written from the protocol."""
  o = ex.get('objects')
  if task.name == 'clevr_count':
    return len(o['size']) - 3
  if task.name == 'clevr_distance':
    d = min(c[2] for c in o['pixel_coords'])
    return int(np.searchsorted([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0], d, side='left')) - 1
  if task.name == 'kitti_distance':
    d = min([loc[2] for t, loc in zip(o['type'], o['location']) if t < 3] + [1000.0])
    return int(np.searchsorted([-100.0, 8.0, 20.0, 999.0], d, side='left')) - 1
  if task.name == 'dsprites_location':
    return ex['label_x_position'] // 2
  if task.name == 'dsprites_orientation':
    return int(np.floor(ex['label_orientation'] / 2.5))
  return ex[task.label_key]


@pytest.fixture
def mocked(tmp_path_factory):
  """All VTAB datasets mocked for one test (the mock patches tfds globally while active)."""
  data_dir = str(tmp_path_factory.getbasetemp() / 'vtab_tfds')
  with transfer_mock.mock_datasets(data_dir):
    yield data_dir


@pytest.mark.parametrize('name', list(vtab.TASKS))
def test_task_data_path(name, mocked):
  task = vtab.TASKS[name]
  counts = tasks.split_counts(task.tfds_name, mocked)
  recipe = tasks.finetune_config('Mixer-Ti_16,cifar10')
  recipe.data_dir = mocked
  val, test = (vtab.task_config(task, recipe=recipe, counts=counts, stage=s, base_lr=0.01,
                                image_size=16) for s in ('val', 'test'))
  info = pipeline.get_dataset_info(val)
  assert (info.num_train_examples, info.num_eval_examples) == (800, 200)
  info = pipeline.get_dataset_info(test)
  assert (info.num_train_examples, info.num_eval_examples) == (1000, VTAB_TEST_SIZES[name])
  assert info.num_classes == task.num_classes

  val.update(batch=BATCH, shuffle_buffer=1, prefetch=0, tf_threads=1)  # first 8, in order
  batch = next(pipeline.get_train_iterator(val, seed=0, local_device_count=1))
  assert batch['images'].shape == (1, BATCH, 16, 16, 3)
  assert batch['labels'].shape == (1, BATCH)  # class indices; one-hot on the device
  assert ((0 <= batch['labels']) & (batch['labels'] < task.num_classes)).all()
  builder = tfds.builder(task.tfds_name, data_dir=mocked)
  expected = [numpy_label(task, transfer_mock.example(builder, 'train', i)) for i in range(BATCH)]
  np.testing.assert_array_equal(batch['labels'][0], expected)


def test_dsprites_images_are_scaled_to_255(mocked):
  c = vtab.task_config(vtab.TASKS['dsprites_location'], recipe=tasks.finetune_config(
      'Mixer-Ti_16,cifar10'), counts={'train': 737280}, stage='val', base_lr=0.01, image_size=64)
  c.update(data_dir=mocked, batch=BATCH, shuffle_buffer=1, prefetch=0, tf_threads=1)
  images = next(pipeline.get_train_iterator(c, seed=0, local_device_count=1))['images']
  assert set(np.unique(images)) == {0, 255}  # 0/1 pixels became 0/255 (uint8 batches)


def test_missing_datasets_are_all_named_before_any_training(tmp_path):
  statuses = [check.dataset_status(n, str(tmp_path)) for n in ('clevr:3.*.*', 'dmlab:2.0.1')]
  assert [s.prepared for s in statuses] == [False, False]

  def trainer(*args):
    raise AssertionError('nothing may train while a dataset is missing')

  fake = [suite.SuiteTask(n, n, 'structured', d, lambda *a: None)
          for n, d in (('clevr_count', 'clevr:3.*.*'), ('dmlab', 'dmlab:2.0.1'),
                       ('resisc45', 'resisc45:3.*.*'))]
  with pytest.raises(FileNotFoundError) as e:
    suite.run_suite(fake, directory=str(tmp_path / 'suite'), lrs=[0.01],
                    data_dir=str(tmp_path), trainer=trainer)
  message = str(e.value)
  for command in ('tfds build clevr', 'tfds build dmlab', 'tfds build resisc45'):
    assert f'{command} --data_dir={tmp_path}' in message
  assert '--manual_dir' in message and 'OneDrive' in message  # resisc45 is a manual download
  assert not (tmp_path / 'suite').exists()


def test_check_flag_lists_prepared_and_missing(tmp_path, capsys):
  args = ['--suite=vtab1k', '--check', f'--data_dir={tmp_path}', '--tasks=dmlab,smallnorb_azimuth']
  with transfer_mock.mock_datasets(str(tmp_path), {'smallnorb:2.*.*': {'train': 1, 'test': 1}}):
    assert cli.main(args) == 1
  out = capsys.readouterr().out
  assert 'smallnorb:2.*.*' in out and 'prepared (2.0.0)' in out
  assert 'dmlab:2.0.1' in out and 'missing' in out and 'tfds build dmlab' in out
  assert '1 of 2 prepared' in out


def test_manual_downloads_are_reported_as_manual_with_their_size():
  """tfds lists 1.1 MiB for diabetic_retinopathy_detection: its label files; the Kaggle
  archives it is built from are tens of GB."""
  dr = check.DatasetStatus('diabetic_retinopathy_detection/btgraham-300:3.*.*', False, None,
                           1_156_000, manual='You have to download this dataset from Kaggle.')
  pets = check.DatasetStatus('oxford_iiit_pet:4.*.*', False, None, 811_000_000, manual='')
  report = check.status_report([dr, pets], '/data')
  assert 'btgraham-300:3.*.*    missing            MANUAL download ~88 GB' in report
  assert '1.1 MiB' not in report
  assert 'missing: 773.4 MiB that tfds downloads + about 88 GB of archives you download ' \
      'yourself (MANUAL)' in report
  assert 'manual download first (~88 GB, Kaggle' in check.missing_message([dr], '/data')


def test_unknown_tasks_are_all_named(capsys):
  with pytest.raises(SystemExit, match='^1$'):
    cli.main(['--suite=vtab1k', '--check', '--tasks=dtd,clevr,kitty'])
  err = capsys.readouterr().err
  assert 'clevr, kitty' in err and 'clevr_count' in err
