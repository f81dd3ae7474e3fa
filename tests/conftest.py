"""Test set-up: 8 simulated CPU devices, fast XLA compiles, one compile cache, a tfds data_dir.

Set through the environment before JAX starts, so subprocesses (the command-line tests) get
the same: compile time dominates these tiny models, so XLA skips most optimisations
(`JAX_DISABLE_MOST_OPTIMIZATIONS`) and every process of the session shares one persistent
compilation cache. Tests that compare runs compare runs made under the same settings.
"""

import atexit
import os
import shutil
import tempfile

import pytest

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
_CACHE = tempfile.mkdtemp(prefix='mixer_flax_xla_cache_')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', _CACHE)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
# Tests that leave `data_dir` unset must not write into the user's ~/tensorflow_datasets:
# tfds reads this variable when it is first imported.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='mixer_flax_tfds_')
atexit.register(shutil.rmtree, os.environ['TFDS_DATA_DIR'], ignore_errors=True)
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope='session')
def random_mixer_params():
  """Factory `(model, image_size, seed=0) -> params` with every leaf random and non-zero:
  kernels N(0, 1/fan_in), LayerNorm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  def make(model, image_size, seed=0):
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    images = jax.ShapeDtypeStruct((1, height, width, 3), np.float32)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), images)['params']
    rng = np.random.default_rng(seed)

    def draw(path, struct):
      noise = rng.standard_normal(struct.shape, np.float32)
      if path[-1].key == 'kernel':
        return noise / np.float32(np.sqrt(np.prod(struct.shape[:-1])))
      return np.float32(0.1) * noise + np.float32(path[-1].key == 'scale')
    return jax.tree_util.tree_map_with_path(draw, shapes)
  return make


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """The session's tfds data_dir with the digits dataset (prepared by the first user)."""
  return str(tmp_path_factory.getbasetemp() / 'tfds_digits')


@pytest.fixture(scope='session')
def reference(data_dir, tmp_path_factory):
  """One uninterrupted run of test_train's tiny digits config: (result, workdir), shared."""
  from test_train import tiny_config  # pylint: disable=g-import-not-at-top

  from mixer_flax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('reference'))
  return train.train_and_evaluate(tiny_config(data_dir), workdir), workdir
