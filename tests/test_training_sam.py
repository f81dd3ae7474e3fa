"""SAM / GSAM in the pmapped train step against steps written out by hand (8 CPU devices).

The oracle: `jax.grad` of a cross-entropy written here, on a tiny Mixer, and the SAM / GSAM
arithmetic (Algorithm 1 of Zhuang et al., 2022) in float64 numpy; plus optax's own SAM
(`optax.contrib.sam`) for the SAM update. Plain SGD without momentum, clipping or weight decay
so the update is `w - lr * g_sam`.
"""

import contextlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mixer_flax import config as config_lib
from mixer_flax import devices, models
from mixer_flax.training import optim, sam
from mixer_flax.training import step as step_lib
from mixer_flax.validate import validate

NUM_CLASSES, IMAGE, BATCH = 10, 16, 16
TINY = dict(hidden_dim=16, num_blocks=1, tokens_mlp_dim=8, channels_mlp_dim=32)
MODEL = models.create_model('Mixer-Ti_4', num_classes=NUM_CLASSES, **TINY)


def make_config(rho=None, rho_min=None, alpha=0.0, **overrides):
  c = config_lib.base_config()
  c.update(dict(
      model_name='Mixer-Ti_4', image_size=IMAGE, batch=BATCH, accum_steps=1, total_steps=20,
      base_lr=0.5, warmup_steps=0, decay_type='linear', end_lr=0.05, optimizer='sgd',
      momentum=0.0, weight_decay=0.0, optim_dtype='float32', grad_norm_clip=None,
      loss='softmax_xent', label_smoothing=0.0,
      sam=dict(rho=rho, rho_min=rho_min, alpha=alpha)), **overrides)
  return c


def batch_arrays(seed=0):
  rs = np.random.RandomState(seed)
  images = rs.uniform(-1, 1, (BATCH, IMAGE, IMAGE, 3)).astype(np.float32)
  labels = np.eye(NUM_CLASSES, dtype=np.float32)[rs.randint(0, NUM_CLASSES, BATCH)]
  return images, labels


@contextlib.contextmanager
def optimizations(disabled: bool):
  """`jax_disable_most_optimizations`: these programs run once, compiling dominates."""
  old = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', disabled)
  try:
    yield
  finally:
    jax.config.update('jax_disable_most_optimizations', old)


@pytest.fixture(scope='module', autouse=True)
def fast_compile():
  with optimizations(True):
    yield


@pytest.fixture(scope='module')
def state0():
  return step_lib.create_train_state(config=make_config(), model=MODEL, rng=jax.random.key(0),
                                     image_size=IMAGE)


GSAM = dict(rho=0.6, rho_min=0.1, alpha=0.4)
STEP = 3  # in the linear decay: rho_t strictly between rho_min and rho


@pytest.fixture(scope='module')
def gsam_one_device(state0):
  return run_step(make_config(**GSAM), state0, num_devices=1, step=STEP)[0]


_STEPS = {}  # pmapped steps by (config, devices, model): each compiles once per module


def run_step(config, state, *, num_devices, step=0, images=None, model=MODEL):
  """One pmapped step on `num_devices`; returns (unreplicated new state, metrics)."""
  images, labels = batch_arrays() if images is None else (images, batch_arrays()[1])
  # The schedule's own counters (optax) follow the trainer's step in a real run.
  has_count = lambda x: 'count' in getattr(x, '_fields', ())  # noqa: E731
  opt_state = jax.tree_util.tree_map(lambda x: x._replace(count=jnp.int32(step)) if has_count(x)
                                     else x, state.opt_state, is_leaf=has_count)
  state = state.replace(step=jnp.int32(step), opt_state=opt_state)
  state = jax.device_put(
      jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x)] * num_devices), state),
      devices.batch_sharding(jax.local_devices()[:num_devices]))
  split = lambda x: x.reshape((num_devices, -1) + x.shape[1:])  # noqa: E731
  key = (json.dumps(config.to_dict(), sort_keys=True), num_devices, id(model))
  if key not in _STEPS:
    _STEPS[key] = step_lib.make_train_step(config=config, model=model,
                                           devices=jax.local_devices()[:num_devices])
  p_step = _STEPS[key]
  new, metrics = p_step(state, {'images': split(images), 'labels': split(labels)},
                        jax.random.key(1))
  return jax.tree_util.tree_map(lambda x: np.asarray(x[0]), (new, metrics))


# ---------------------------------------------------------------------------
# The hand-written step.

def _loss(params, images, labels):
  """The mean cross-entropy, written out."""
  logits = MODEL.apply({'params': params}, images, train=True, rngs={'dropout': jax.random.key(0)})
  return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1))


_grad = jax.jit(jax.grad(_loss))


def hand_grad(params, images, labels):
  """jax.grad of the mean cross-entropy, as float64 numpy leaves."""
  return jax.tree_util.tree_map(lambda g: np.asarray(g, np.float64),
                                _grad(params, images, labels))


def hand_sam_grad(params, images, labels, *, rho, alpha):
  """Algorithm 1 of the GSAM paper (alpha = 0: SAM) in numpy, on one shard of the batch."""
  leaves = lambda t: jax.tree_util.tree_leaves(t)  # noqa: E731
  norm = lambda t: np.sqrt(sum(np.sum(x * x) for x in leaves(t)))  # noqa: E731
  g = hand_grad(params, images, labels)
  scale = rho / (norm(g) + sam.EPS)
  perturbed = jax.tree_util.tree_map(lambda w, x: (np.float64(w) + scale * x).astype(np.float32),
                                     params, g)
  g_p = hand_grad(perturbed, images, labels)
  unit = jax.tree_util.tree_map(lambda x: x / (norm(g_p) + sam.EPS), g_p)
  along = sum(np.sum(a * b) for a, b in zip(leaves(g), leaves(unit)))
  return jax.tree_util.tree_map(lambda gp, x, u: gp - alpha * (x - along * u), g_p, g, unit)


def hand_step(config, params, *, step, rho, alpha, shards=1):
  """`w - lr * mean over shards of g_sam(shard)`: each shard perturbs with its own gradient."""
  images, labels = batch_arrays()
  parts = [hand_sam_grad(params, x, y, rho=rho, alpha=alpha)
           for x, y in zip(np.split(images, shards), np.split(labels, shards))]
  lr = float(optim.make_schedule(config)(step))
  return jax.tree_util.tree_map(lambda w, *gs: w - lr * np.mean(gs, axis=0), params, *parts)


def assert_close(a, b, atol=2e-6):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_allclose(x, y, atol=atol, rtol=0)


def max_diff(a, b):
  return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                         jax.tree_util.tree_leaves(b)))


# ---------------------------------------------------------------------------
# Tests.

def test_sam_step_matches_hand_written_step_and_optax_sam(state0):
  config = make_config(rho=0.5)
  new, metrics = run_step(config, state0, num_devices=1)
  expected = hand_step(config, state0.params, step=0, rho=0.5, alpha=0.0)
  assert_close(new.params, expected)
  assert max_diff(new.params, hand_step(config, state0.params, step=0, rho=0.0, alpha=0.0)) > 1e-4
  assert int(new.step) == 1 and metrics['finite'] == 1.0
  # optax's SAM (opaque mode: normalized-SGD ascent of rho, then the outer SGD).
  images, labels = batch_arrays()
  lr = float(optim.make_schedule(config)(0))
  grad_fn = lambda p, _: jax.tree_util.tree_map(jnp.float32, hand_grad(p, images, labels))  # noqa
  tx = optax.contrib.sam(optax.sgd(lr), optax.chain(optax.contrib.normalize(), optax.sgd(0.5)),
                         opaque_mode=True)
  updates, _ = tx.update(grad_fn(state0.params, 0), tx.init(state0.params), state0.params,
                         grad_fn=grad_fn)
  assert_close(new.params, optax.apply_updates(state0.params, updates))


def test_gsam_step_matches_hand_written_step_with_rho_schedule(state0, gsam_one_device):
  config = make_config(**GSAM)
  lr = float(optim.make_schedule(config)(STEP))
  rho_t = 0.1 + (0.6 - 0.1) * (lr - 0.05) / (0.5 - 0.05)  # Algorithm 1, step 0
  assert 0.1 < rho_t < 0.6
  assert float(sam.rho_schedule(config, optim.make_schedule(config))(STEP)) == pytest.approx(
      rho_t, rel=1e-6)
  expected = hand_step(config, state0.params, step=STEP, rho=rho_t, alpha=0.4)
  assert_close(gsam_one_device.params, expected)
  sam_only = hand_step(config, state0.params, step=STEP, rho=rho_t, alpha=0.0)
  assert max_diff(gsam_one_device.params, sam_only) > 1e-4  # alpha's ascent is visible


def test_perturbation_uses_each_devices_gradient(state0, gsam_one_device):
  """8 devices: each perturbs with its own 2 examples' gradient (m-sharpness), unlike 1."""
  config = make_config(**GSAM)
  new8, _ = run_step(config, state0, num_devices=8, step=STEP)
  rho_t = float(sam.rho_schedule(config, optim.make_schedule(config))(STEP))
  assert_close(new8.params, hand_step(config, state0.params, step=STEP, rho=rho_t, alpha=0.4,
                                      shards=8))
  assert max_diff(new8.params, gsam_one_device.params) > 1e-4


def test_accumulation_does_not_change_the_perturbation(state0, gsam_one_device):
  """Both passes accumulate all microbatches first: accum_steps=4 == 1 on one device."""
  four, _ = run_step(make_config(accum_steps=4, **GSAM), state0, num_devices=1, step=STEP)
  assert_close(four.params, gsam_one_device.params)


@pytest.mark.parametrize('dtype,fast', [('float32', True),
                                        pytest.param('bfloat16', False, marks=pytest.mark.slow)])
def test_rho_zero_equals_plain_step_exactly(state0, dtype, fast):
  """rho = 0, alpha = 0 runs both passes, yet gives the plain step's state bit for bit
  (2 devices, 2 microbatches, Adam with clipping and weight decay; mixed precision too;
  the bfloat16 case with XLA's full optimizations, as a real run compiles it)."""
  with optimizations(fast):
    check_rho_zero(dtype, state0.params)


def check_rho_zero(dtype, params):
  model = models.create_model('Mixer-Ti_4', num_classes=NUM_CLASSES, dtype=dtype, **TINY)
  common = dict(accum_steps=2, optimizer='adam', grad_norm_clip=1.0, weight_decay=0.1)
  state = step_lib.create_train_state(config=make_config(**common), model=model,
                                      rng=jax.random.key(0), image_size=IMAGE, params=params)
  plain, m_plain = run_step(make_config(**common), state, num_devices=2, step=STEP, model=model)
  zero, m_zero = run_step(make_config(rho=0.0, **common), state, num_devices=2, step=STEP,
                          model=model)
  for x, y in zip(jax.tree_util.tree_leaves((plain, m_plain)),
                  jax.tree_util.tree_leaves((zero, m_zero)), strict=True):
    np.testing.assert_array_equal(x, y)


def test_non_finite_sam_step_leaves_state_unchanged(state0):
  images, _ = batch_arrays()
  images[5] = np.nan
  new, metrics = run_step(make_config(**GSAM), state0, num_devices=8, step=STEP, images=images)
  assert metrics['finite'] == 0.0 and int(new.step) == STEP
  assert_close(new.params, state0.params, atol=0)


def test_config_problems_name_every_bad_key():
  config = config_lib.base_config()
  assert sam.sam_problems(config) == []  # off by default
  config.sam.update(rho=0.5, rho_min=0.1, alpha=0.2)
  assert sam.sam_problems(config) == []
  config.sam.update(rho=-1.0, rho_min=2.0, alpha=-0.5)
  config.sam.extra = 1
  with pytest.raises(ValueError) as e:
    validate(config, num_devices=1, process_count=1, check_files=False)
  for key in ('sam.extra', 'sam.rho=-1.0', 'sam.rho_min=2.0', 'sam.alpha=-0.5'):
    assert f'config.{key}' in str(e.value)
  off = config_lib.base_config()
  off.sam.alpha = 0.3
  assert 'config.sam.rho is None' in ' '.join(sam.sam_problems(off))


@pytest.mark.parametrize('arg', ['S_32', 'S_16', 'S_8', 'B_32', 'B_16', 'B_16,test'])
def test_gsam_recipes_validate_and_tie_rho_to_the_lr(arg):
  config = config_lib.load_experiment(f'experiments/gsam_mixer.py:{arg}')
  validate(config, num_devices=8, process_count=1, check_files=False)
  assert config.model_name == f'Mixer-{arg.split(",")[0]}'
  assert (config.batch, config.base_lr, config.end_lr, config.weight_decay) == (
      4096, 3e-3, 3e-5, 0.3)
  assert (config.pp.crop, config.pp.flip, config.pp.randaug_layers, config.pp.mixup_alpha) == (
      'inception', True, 0, 0.0)
  rho = sam.rho_schedule(config, optim.make_schedule(config))
  assert float(rho(config.warmup_steps)) == pytest.approx(config.sam.rho, rel=1e-5)
  assert float(rho(config.total_steps)) == pytest.approx(config.sam.rho_min, abs=1e-6)
  assert config.evals.eval.to_dict() == dict(type='classification', every=2_500)
  with pytest.raises(ValueError, match='not a Mixer row'):
    config_lib.load_experiment('experiments/gsam_mixer.py:L_16')
