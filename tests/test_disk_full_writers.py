"""Every writer of the scripts against a full disk: one line, no partial file, the old one kept.

`fileio.WriteError` is what each raises (the entry points print its message as is); the
disks are those of tests/test_disk_full.py (`full_disk.py`): a real tmpfs where this process
may mount one, and ENOSPC injected at the write calls everywhere.
"""

import errno
import hashlib
import os
import pickle

import numpy as np
import pytest
from full_disk import make_disk

from mixer_flax import checkpoint, download, fileio, models
from mixer_flax.checkpoint import cli
from mixer_flax.paper import figures


@pytest.fixture(params=[pytest.param('tmpfs', marks=pytest.mark.slow), 'injected'])
def disk(request, tmp_path, monkeypatch):
  d = make_disk(request.param, str(tmp_path), monkeypatch)
  yield d
  d.close()


@pytest.fixture(scope='module')
def tiny_npz(tmp_path_factory, random_mixer_params):
  """A Mixer-Ti/4 (16 px, 6 classes) checkpoint outside the full disk."""
  model = models.create_model('Mixer-Ti_4', num_classes=6)
  path = str(tmp_path_factory.mktemp('src') / 'ti4.npz')
  checkpoint.save_npz(path, random_mixer_params(model, 16))
  return path


def listing(root):
  return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root)
                for n in dirs + files if n != 'filler')


def one_line(error, *patterns):
  text = str(error)
  assert '\n' not in text and len(text) < 500, text
  for p in patterns:
    assert p in text, text
  return text


def test_storage_errors_are_recognised_in_every_form():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  assert fileio.storage_errno(OSError(errno.ENOSPC, 'x')) == errno.ENOSPC
  assert fileio.storage_errno(PermissionError(errno.EACCES, 'x')) == errno.EACCES
  tensorstore = ValueError("RESOURCE_EXHAUSTED: Error writing \"a/0\": Failed to write 2867200 "
                           "bytes to file 5: No space left on device [os_error_code='28']")
  assert fileio.storage_errno(tensorstore) == errno.ENOSPC
  tf_error = tf.errors.ResourceExhaustedError(None, None, 'w/events; Disk quota exceeded')
  assert fileio.storage_errno(tf_error) == errno.EDQUOT
  wrapped = RuntimeError('commit failed')
  wrapped.__cause__ = OSError(errno.EROFS, 'x')
  assert fileio.storage_errno(wrapped) == errno.EROFS
  assert fileio.storage_errno(ValueError('bad shape')) is None
  assert fileio.storage_errno(OSError(errno.ENOENT, 'x')) is None
  error = fileio.write_error(tensorstore, what='the thing', path='/d/f', needed=3 << 20)
  assert isinstance(error, OSError) and error.errno == errno.ENOSPC
  one_line(error, 'Cannot write the thing to /d/f: no space left', 'needs ~3.0 MiB', 'free')
  assert str(pickle.loads(pickle.dumps(error))) == str(error)  # crosses processes intact


def test_npz_and_json_keep_the_old_file(disk):
  path = os.path.join(disk.path, 'final.npz')
  old = {'stem': {'kernel': np.ones((4, 4, 3, 8), np.float32)}}
  checkpoint.save_npz(path, old)
  fileio.write_atomic(os.path.join(disk.path, 'result.json'), '{"step": 1}', what='the result')
  before = listing(disk.path)
  disk.fill(leave=0)
  with pytest.raises(fileio.WriteError) as e:
    checkpoint.save_npz(path, {'stem': {'kernel': np.zeros((64, 64, 3, 8), np.float32)}})
  one_line(e.value, 'the parameters (final.npz)', 'no space left', 'needs ~384.', 'free')
  with pytest.raises(fileio.WriteError):
    fileio.write_atomic(os.path.join(disk.path, 'result.json'), '{"step": 2}' * 1000,
                        what='the result')
  assert listing(disk.path) == before  # no temporary file left
  np.testing.assert_array_equal(checkpoint.load_npz(path)['stem']['kernel'], 1)
  assert open(os.path.join(disk.path, 'result.json')).read() == '{"step": 1}'


def test_exports_fail_in_one_line_without_partial_files(disk, tiny_npz, capsys):
  disk.fill(leave=0)
  with pytest.raises(SystemExit, match='1'):
    cli.export_timm_main([tiny_npz, os.path.join(disk.path, 'ti4.safetensors')])
  one_line(capsys.readouterr().err.strip(), 'error: ', 'the timm state_dict', 'ti4.safetensors')
  with pytest.raises(SystemExit, match='1'):
    cli.export_main(['--checkpoint', tiny_npz, '--output', os.path.join(disk.path, 'ti4.jx'),
                     '--platforms', 'cpu'])
  one_line(capsys.readouterr().err.strip(), 'error: ', 'the exported module', 'ti4.jx')
  assert listing(disk.path) == []


def test_figures_script_prints_one_line(disk, tiny_npz, capsys):
  out = os.path.join(disk.path, 'figs')
  os.makedirs(out)
  disk.fill(leave=0)
  with pytest.raises(SystemExit, match='1'):
    figures.main(['--checkpoint', tiny_npz, '--out', out, '--blocks', '0', '--units', '4',
                  '--stem_filters', '4'])
  err = capsys.readouterr().err.strip()
  one_line(err, 'Cannot write the figure to', 'fig5_token_mixing.png')
  assert listing(out) == []


def test_download_into_a_full_cache_is_resumed_once_space_is_back(disk, tmp_path):
  source = tmp_path / 'Mixer-X.npz'
  data = np.random.default_rng(0).bytes(300 << 10)
  source.write_bytes(data)
  url = f'file://{source}'
  disk.fill(leave=100 << 10)
  with pytest.raises(fileio.WriteError) as e:
    download.fetch(url, directory=disk.path, progress=False)
  one_line(e.value, f'the download of {url}', '.part', 'MIXER_FLAX_CACHE')
  dest = download.cache_path(url, directory=disk.path)
  assert not os.path.exists(dest) and os.path.exists(dest + '.part')
  disk.free()
  sha = hashlib.sha256(data).hexdigest()
  assert download.fetch(url, directory=disk.path, progress=False, sha256=sha) == dest
  assert listing(os.path.dirname(dest)) == ['Mixer-X.npz']
