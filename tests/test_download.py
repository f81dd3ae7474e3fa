"""download.fetch against a local HTTP server: verification, resume, timeouts, file modes."""

import contextlib
import hashlib
import http.server
import os
import socket
import stat
import threading
import time

import numpy as np
import pytest

from mixer_flax import checkpoint, download

DATA = np.random.default_rng(0).bytes(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves DATA with Range support; `server.cut` truncates the next response."""

  def do_GET(self):  # noqa: N802
    self.server.ranges.append(self.headers.get('Range'))
    start = 0
    if (spec := self.headers.get('Range')) and self.server.honour_range:
      start = int(spec.split('=')[1].split('-')[0])
    body = DATA[start:]
    self.send_response(206 if start else 200)
    self.send_header('Content-Length', str(len(body)))
    if start:
      self.send_header('Content-Range', f'bytes {start}-{len(DATA) - 1}/{len(DATA)}')
    self.end_headers()
    cut, self.server.cut = self.server.cut, None
    self.wfile.write(body[:cut] if cut else body)
    if cut:
      self.wfile.flush()
      self.connection.shutdown(socket.SHUT_RDWR)

  def log_message(self, *args):
    pass


@pytest.fixture
def server():
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  httpd.ranges, httpd.cut, httpd.honour_range = [], None, True
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd, f'http://127.0.0.1:{httpd.server_address[1]}/models/Mixer-X.npz'
  httpd.shutdown()
  httpd.server_close()


@contextlib.contextmanager
def _umask(mask):
  old = os.umask(mask)
  try:
    yield
  finally:
    os.umask(old)


def test_fetch_verifies_and_honours_umask(server, tmp_path):
  _, url = server
  with _umask(0o027):
    path = download.fetch(url, directory=str(tmp_path), sha256=SHA, progress=False)
  assert open(path, 'rb').read() == DATA
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # Not mkstemp's 0600.
  assert os.listdir(os.path.dirname(path)) == ['Mixer-X.npz']
  with pytest.raises(download.DownloadError, match=r'Mixer-X\.npz: the download has sha256 '):
    download.fetch(url, directory=str(tmp_path / 'bad'), sha256='0' * 64, progress=False)
  assert not any(files for _, _, files in os.walk(tmp_path / 'bad'))  # Nothing left behind.


def test_fetch_resumes_an_interrupted_download(server, tmp_path):
  httpd, url = server
  httpd.cut = 100_000
  with pytest.raises(download.DownloadError, match=r'127\.0\.0\.1.*resumed by the next call'):
    download.fetch(url, directory=str(tmp_path), progress=False)
  part = download.cache_path(url, directory=str(tmp_path)) + '.part'
  assert os.path.getsize(part) == 100_000
  path = download.fetch(url, directory=str(tmp_path), sha256=SHA, progress=False)
  assert open(path, 'rb').read() == DATA and not os.path.exists(part)
  assert httpd.ranges[-1] == 'bytes=100000-'

  # A stale partial file (another file's bytes) fails the hash and is restarted from scratch.
  with open(part, 'wb') as f:
    f.write(bytes(5_000))
  os.remove(path)
  assert open(download.fetch(url, directory=str(tmp_path), sha256=SHA, progress=False),
              'rb').read() == DATA
  assert httpd.ranges[-2:] == ['bytes=5000-', None]
  # A server that ignores Range (200 instead of 206): the partial file is replaced.
  httpd.honour_range = False
  with open(part, 'wb') as f:
    f.write(DATA[:7])
  os.remove(path)
  assert open(download.fetch(url, directory=str(tmp_path), progress=False), 'rb').read() == DATA


def test_silent_server_and_unreachable_host_fail_clearly(tmp_path):
  silent = socket.socket()
  silent.bind(('127.0.0.1', 0))
  silent.listen(1)  # Accepts connections (kernel backlog) but never answers.
  url = f'http://127.0.0.1:{silent.getsockname()[1]}/m.npz'
  start = time.monotonic()
  with pytest.raises(download.DownloadError, match=r'1:\d+/m\.npz: no answer within 1 s'):
    download.fetch(url, directory=str(tmp_path), timeout=1, progress=False)
  assert time.monotonic() - start < 30
  silent.close()
  with pytest.raises(download.DownloadError, match=r'https://mixer\.invalid/m\.npz is unreachable'):
    checkpoint.load_npz('https://mixer.invalid/m.npz')


def test_save_npz_honours_umask(tmp_path):
  with _umask(0o022):
    checkpoint.save_npz(str(tmp_path / 'final.npz'), {'stem': {'bias': np.ones(2)}})
  assert stat.S_IMODE(os.stat(tmp_path / 'final.npz').st_mode) == 0o644


def test_gfile_errors_say_unreachable(tmp_path, monkeypatch):
  """A TensorFlow file-system error reading gs:// is reported as such, not as a corrupt file."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class Offline:  # Like GFile: opens lazily, fails on the first access.
    def __init__(self, *args, **kwargs):
      pass

    def __enter__(self):
      return self

    def __exit__(self, *args):
      pass

    def __getattr__(self, name):  # read, seek, tell, ...
      raise tf.errors.FailedPreconditionError(None, None, 'Could not resolve host')
  monkeypatch.setattr(tf.io.gfile, 'GFile', Offline)
  with pytest.raises(OSError, match=r'gs://bucket/m\.npz is unreachable .*resolve host'):
    checkpoint.load_npz('gs://bucket/m.npz')
