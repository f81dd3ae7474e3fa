"""Test set-up: 8 simulated CPU devices (pmap tests) and a per-session tfds data_dir."""

import atexit
import os
import shutil
import tempfile

import pytest

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Tests that leave `data_dir` unset must not write into the user's ~/tensorflow_datasets:
# tfds reads this variable when it is first imported.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='mixer_flax_tfds_')
atexit.register(shutil.rmtree, os.environ['TFDS_DATA_DIR'], ignore_errors=True)


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
