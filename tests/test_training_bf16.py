"""Mixed precision: bfloat16 compute with float32 parameters trains digits as well as float32."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import checkpoint, models, train
from mixer_flax import config as config_lib

pytestmark = pytest.mark.slow  # a quick tier without it: README "Tests"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 100


def _config(data_dir, dtype):
  c = config_lib.load_experiment(f'experiments/digits.py:{STEPS}')
  c.data_dir = data_dir
  c.model.update(dict(hidden_dim=64, num_blocks=2, tokens_mlp_dim=32, channels_mlp_dim=128,
                      dtype=dtype))
  c.batch = 64
  c.batch_eval = 360
  c.shuffle_buffer = 512
  c.warmup_steps = 15
  c.base_lr = 3e-3
  c.progress_every = 50
  c.evals.eval.every = c.checkpoint_every = STEPS
  c.tf_threads = 1
  return c


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  data_dir = str(tmp_path_factory.getbasetemp() / 'tfds_digits')  # the session's digits
  out = {}
  for dtype in ('float32', 'bfloat16'):
    workdir = str(tmp_path_factory.mktemp(dtype))
    out[dtype] = (train.train_and_evaluate(_config(data_dir, dtype), workdir), workdir)
  return out


def test_bf16_training_matches_f32_accuracy(runs):
  f32, _ = runs['float32']
  bf16, _ = runs['bfloat16']
  assert f32['eval_accuracy'] > 0.85  # 10 classes, chance 0.1
  assert bf16['eval_accuracy'] >= f32['eval_accuracy'] - 0.03
  assert abs(bf16['train_loss'] - f32['train_loss']) < 0.05


def test_bf16_run_keeps_f32_params_and_computes_in_bf16(runs):
  _, workdir = runs['bfloat16']
  params = checkpoint.load_npz(os.path.join(workdir, 'final.npz'))
  leaves = jax.tree_util.tree_leaves(params)
  assert leaves and all(x.dtype == np.float32 for x in leaves)
  kw = dict(num_classes=10, hidden_dim=64, num_blocks=2, tokens_mlp_dim=32, channels_mlp_dim=128)
  images = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1, maxval=1)
  f32 = models.create_model('Mixer-Ti_4', **kw).apply({'params': params}, images)
  bf16_model = models.create_model('Mixer-Ti_4', dtype='bfloat16', **kw)
  bf16 = bf16_model.apply({'params': params}, images)
  assert bf16.dtype == jnp.float32  # logits in float32
  # Same function up to bfloat16 rounding (8 mantissa bits), but not bit-identical.
  assert 0 < float(jnp.max(jnp.abs(bf16 - f32))) < 0.1 * float(jnp.max(jnp.abs(f32)))
  hidden = jax.eval_shape(
      lambda p, x: bf16_model.apply({'params': p}, x, capture_intermediates=True,
                                    mutable=['intermediates']), params, images)[1]
  dtypes = {v.dtype for v in jax.tree_util.tree_leaves(hidden['intermediates']['MixerBlock_0'])}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}
