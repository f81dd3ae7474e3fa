"""Test set-up: 8 simulated CPU devices (pmap tests) and a per-session tfds data_dir."""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX initialises its backends.
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Tests that leave `data_dir` unset must not write into the user's ~/tensorflow_datasets:
# tfds reads this variable when it is first imported.
os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='mixer_flax_tfds_')
atexit.register(shutil.rmtree, os.environ['TFDS_DATA_DIR'], ignore_errors=True)
