"""Schedules, optimizer, losses and the pmapped train / eval steps (8 simulated CPU devices)."""

import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mixer_flax import config as config_lib
from mixer_flax import models
from mixer_flax.training import losses, optim
from mixer_flax.training import step as step_lib

NUM_CLASSES = 10
IMAGE = 16
GLOBAL_BATCH = 16
# A very small Mixer (patch 4 at 16 px: 16 tokens) so compiling stays cheap.
TINY = dict(hidden_dim=32, num_blocks=1, tokens_mlp_dim=16, channels_mlp_dim=64)


def make_config(**overrides) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.update(dict(
      model_name='Mixer-Ti_4', image_size=IMAGE, batch=GLOBAL_BATCH, batch_eval=GLOBAL_BATCH,
      accum_steps=1, total_steps=20, base_lr=1e-2, warmup_steps=4, decay_type='linear',
      end_lr=1e-4, optimizer='adam', weight_decay=0.1, momentum=0.9, optim_dtype='float32',
      grad_norm_clip=1.0, loss='softmax_xent', label_smoothing=0.1), **overrides)
  return c


def tiny_model(**overrides):
  return models.create_model('Mixer-Ti_4', num_classes=NUM_CLASSES, **{**TINY, **overrides})


def global_batch(seed: int = 0):
  rs = np.random.RandomState(seed)
  images = rs.uniform(-1, 1, (GLOBAL_BATCH, IMAGE, IMAGE, 3)).astype(np.float32)
  labels = np.eye(NUM_CLASSES, dtype=np.float32)[rs.randint(0, NUM_CLASSES, GLOBAL_BATCH)]
  return images, labels


def shard(x: np.ndarray, n: int) -> np.ndarray:
  return x.reshape((n, x.shape[0] // n) + x.shape[1:])


def replicate(tree, n: int):
  """Stacks `tree` n times onto the first n devices (committed, as the trainer does: numpy
  inputs would compile the step a second time on the next call)."""
  sharding = NamedSharding(Mesh(np.array(jax.local_devices()[:n]), ('batch',)), P('batch'))
  return jax.device_put(jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x)] * n), tree),
                        sharding)


def unreplicate(tree):
  return jax.tree_util.tree_map(lambda x: np.asarray(x)[0], tree)


def run_steps(config, *, num_devices: int, steps: int = 3, model=None):
  """Losses per step and final unreplicated params of `steps` updates on fixed batches."""
  model = model or tiny_model()
  devices = jax.local_devices()[:num_devices]
  state = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                      image_size=IMAGE)
  state = replicate(state, num_devices)
  p_step = step_lib.make_train_step(config=config, model=model, devices=devices)
  losses = []
  for i in range(steps):
    images, labels = global_batch(i)
    batch = {'images': shard(images, num_devices), 'labels': shard(labels, num_devices)}
    state, metrics = p_step(state, batch, jax.random.key(42))
    losses.append(float(metrics['train_loss'][0]))
    assert float(metrics['finite'][0]) == 1.0
  return np.array(losses), unreplicate(state)


# The equivalence tests use SGD: its update is linear in the gradient, so float rounding in
# the cross-device / microbatch averages stays at rounding level (Adam's g / sqrt(v) amplifies
# it for near-zero gradients). Weight decay and label smoothing stay on.
SGD = dict(optimizer='sgd', base_lr=0.1, momentum=0.9)


@pytest.fixture(scope='module')
def one_device_run():
  return run_steps(make_config(**SGD), num_devices=1)


def assert_trees_close(a, b, atol):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
    np.testing.assert_allclose(x, y, atol=atol, rtol=0)


# ---------------------------------------------------------------------------
# Schedule and optimizer.

@pytest.mark.parametrize('decay_type', ['linear', 'cosine'])
def test_schedule_is_the_references_warmup_then_decay(decay_type):
  """big_vision / vit_jax: peak * min(1, step / warmup) on an optax count from 0, so lr 0 at the
  first update and the peak at step = warmup; here against optax's own schedules."""
  peak, end, warmup, total = 1.0, 0.1, 4, 14
  lr = optim.make_schedule(make_config(base_lr=peak, warmup_steps=warmup, total_steps=total,
                                       end_lr=end, decay_type=decay_type))
  if decay_type == 'cosine':
    want = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total, end_value=end)
  else:
    want = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup),
                                 optax.linear_schedule(peak, end, total - warmup)], [warmup])
  values = np.array([float(lr(s)) for s in range(total + 3)])
  np.testing.assert_allclose(values, [float(want(s)) for s in range(total + 3)], atol=1e-6)
  assert values[0] == 0.0 and values[warmup] == pytest.approx(peak) and values[warmup - 1] < peak
  assert values[total] == pytest.approx(end)


def test_schedule_cosine_and_no_warmup():
  lr = optim.make_schedule(make_config(base_lr=2.0, warmup_steps=0, total_steps=10,
                                       decay_type='cosine', end_lr=0.0))
  assert float(lr(0)) == pytest.approx(2.0)
  assert float(lr(5)) == pytest.approx(1.0, rel=1e-6)
  assert float(lr(10)) == pytest.approx(0.0, abs=1e-6)
  assert float(lr(20)) == pytest.approx(0.0, abs=1e-6)


def test_weight_decay_only_on_kernels_and_scaled_by_lr():
  params = {'stem': {'kernel': jnp.full((2, 3), 2.0), 'bias': jnp.full((3,), 2.0)},
            'LayerNorm_0': {'scale': jnp.full((3,), 2.0), 'bias': jnp.full((3,), 2.0)}}
  config = make_config(weight_decay=0.5, base_lr=0.1, warmup_steps=0, grad_norm_clip=None)
  tx = optim.make_optimizer(config)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  # Zero gradients: Adam's direction is 0, so the update is -lr * wd * param on kernels only.
  np.testing.assert_allclose(updates['stem']['kernel'], -0.1 * 0.5 * 2.0, rtol=1e-6)
  for leaf in (updates['stem']['bias'], updates['LayerNorm_0']['scale'],
               updates['LayerNorm_0']['bias']):
    np.testing.assert_array_equal(leaf, 0.0)


def test_sgd_momentum_clipping_and_optim_dtype():
  params = {'head': {'kernel': jnp.zeros((4,)), 'bias': jnp.zeros((1,))}}
  config = make_config(optimizer='sgd', momentum=0.9, weight_decay=0.0, base_lr=1.0,
                       warmup_steps=0, decay_type='cosine', total_steps=1000, grad_norm_clip=1.0,
                       optim_dtype='bfloat16')
  tx = optim.make_optimizer(config)
  opt_state = tx.init(params)
  assert {x.dtype for x in jax.tree_util.tree_leaves(opt_state)} >= {jnp.dtype('bfloat16')}
  grads = {'head': {'kernel': jnp.full((4,), 5.0), 'bias': jnp.zeros((1,))}}  # norm 10
  u1, opt_state = tx.update(grads, opt_state, params)
  u2, _ = tx.update(grads, opt_state, params)
  np.testing.assert_allclose(u1['head']['kernel'], -0.5, rtol=1e-2)  # clipped to norm 1
  np.testing.assert_allclose(u2['head']['kernel'], -0.5 * 1.9, rtol=1e-2)  # momentum 0.9


# ---------------------------------------------------------------------------
# Losses.

def test_softmax_xent_with_label_smoothing_by_hand():
  logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
  labels = np.array([[1.0, 0.0, 0.0], [0.0, 0.3, 0.7]], np.float32)
  eps = 0.3
  got = losses.softmax_xent(jnp.asarray(logits), jnp.asarray(labels), label_smoothing=eps)
  log_p = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
  targets = (1 - eps) * labels + eps / 3
  np.testing.assert_allclose(got, -np.sum(targets * log_p, axis=1), rtol=1e-6)
  # Row 2 has uniform logits: the loss is log(3) whatever the targets.
  assert float(got[1]) == pytest.approx(math.log(3), rel=1e-6)


def test_sigmoid_xent_by_hand():
  logits = np.array([[3.0, -2.0, 0.0, -6.9]], np.float32)
  labels = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)
  got = losses.sigmoid_xent(jnp.asarray(logits), jnp.asarray(labels))
  want = (np.log1p(np.exp(-3.0)) + np.log1p(np.exp(-2.0)) + math.log(2.0)
          + np.log1p(np.exp(-6.9)))
  assert float(got[0]) == pytest.approx(want, rel=1e-6)


# ---------------------------------------------------------------------------
# Train step.

def test_create_train_state_from_scratch_and_from_params():
  model = tiny_model()
  state = step_lib.create_train_state(config=make_config(), model=model,
                                      rng=jax.random.key(0), image_size=IMAGE)
  assert int(state.step) == 0
  assert state.params['head']['kernel'].shape == (32, NUM_CLASSES)
  given = jax.tree_util.tree_map(lambda x: np.full(x.shape, 0.5, np.float32), state.params)
  state2 = step_lib.create_train_state(config=make_config(), model=model,
                                       rng=jax.random.key(1), image_size=IMAGE, params=given)
  np.testing.assert_array_equal(state2.params['stem']['kernel'], 0.5)


def test_eight_devices_match_one_device(one_device_run):
  losses1, params1 = one_device_run
  losses8, params8 = run_steps(make_config(**SGD), num_devices=8)
  assert losses1[-1] < losses1[0]  # it trains
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  assert_trees_close(params8, params1, atol=1e-6)


def test_accumulation_matches_full_batch(one_device_run):
  losses1, params1 = one_device_run
  losses2, params2 = run_steps(make_config(accum_steps=2, **SGD), num_devices=1)
  np.testing.assert_allclose(losses2, losses1, rtol=1e-5)
  assert_trees_close(params2, params1, atol=1e-6)


def test_stochastic_depth_rng_and_non_finite_guard():
  """Same (key, step) -> same update, whether the key is typed/unreplicated or raw/replicated;
  a NaN batch leaves the state unchanged and reports finite == 0."""
  config = make_config(warmup_steps=0)  # the warm-up's first update has lr 0
  model = tiny_model(stoch_depth=0.5, num_blocks=2)  # block 0 never drops
  devices = jax.local_devices()[:2]
  p_step = step_lib.make_train_step(config=config, model=model, devices=devices)
  state0 = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                       image_size=IMAGE)
  images, labels = global_batch(0)
  batch = {'images': shard(images, 2), 'labels': shard(labels, 2)}
  key = jax.random.key(7)
  raw_replicated = np.stack([np.asarray(jax.random.key_data(key))] * 2)
  out = [unreplicate(p_step(replicate(state0, 2), batch, k)[0].params)
         for k in (key, raw_replicated, jax.random.key(8))]
  assert_trees_close(out[0], out[1], atol=0)
  diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(out[0]),
                                                         jax.tree_util.tree_leaves(out[2])))
  assert diff > 1e-6  # a different key drops different branches

  images[3] = np.nan
  batch = {'images': shard(images, 2), 'labels': shard(labels, 2)}
  state, metrics = p_step(replicate(state0, 2), batch, key)
  assert float(metrics['finite'][0]) == 0.0
  assert not np.isfinite(float(metrics['train_loss'][0]))
  assert int(state.step[0]) == 0
  assert_trees_close(unreplicate(state.params), state0.params, atol=0)


# ---------------------------------------------------------------------------
# Eval step.

def test_eval_step_masks_padding_and_counts_top5():
  model = tiny_model()
  config = make_config(loss='softmax_xent')
  params = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                       image_size=IMAGE).params
  # Zero head kernel: logits = head bias for every image, ranking classes 9 > 8 > ... > 0.
  bias = np.arange(NUM_CLASSES, dtype=np.float32) * 0.5
  params['head']['kernel'] = jnp.zeros_like(params['head']['kernel'])
  params['head']['bias'] = jnp.asarray(bias)
  label_ids = np.array([9, 9, 8, 5, 0, 1, 9, 3, 7, 9, 6, 2, 4, 9, 0, 9])
  labels = np.eye(NUM_CLASSES, dtype=np.float32)[label_ids]
  labels[4, 9] = 1.0  # multi-label example: one positive is the argmax -> correct
  mask = np.ones(GLOBAL_BATCH, np.float32)
  mask[[13, 14, 15]] = 0.0  # padding (two of them would be "correct")
  images, _ = global_batch(0)
  batch = {'images': shard(images, 8), 'labels': shard(labels, 8), 'mask': shard(mask, 8)}
  sums = step_lib.make_eval_step(model=model, config=config)(replicate(params, 8), batch)
  sums = {k: np.asarray(v) for k, v in sums.items()}
  for v in sums.values():
    assert np.all(v == v[0])  # psum'd: replicated
  real = mask > 0
  assert sums['count'][0] == 13
  top1 = labels[:, 9] > 0
  top5 = labels[:, 5:].sum(axis=1) > 0
  assert sums["correct"][0] == np.sum(top1 & real) == 5
  assert sums['correct_top5'][0] == np.sum(top5 & real)
  log_p = bias - np.log(np.sum(np.exp(bias)))
  want_loss = -np.sum((labels * log_p).sum(axis=1)[real])  # no label smoothing at eval
  assert sums['loss'][0] == pytest.approx(want_loss, rel=1e-5)


def test_modules_import_without_tensorflow():
  """benchmark.py runs them on GPU machines without TensorFlow."""
  code = ('import sys; import mixer_flax.perf.benchmark, mixer_flax.config; '
          'assert "tensorflow" not in sys.modules, "TensorFlow was imported"')
  root = pathlib.Path(__file__).resolve().parent.parent
  subprocess.run([sys.executable, '-c', code], check=True, cwd=root,
                 env={**os.environ, 'PYTHONPATH': str(root)})


# ---------------------------------------------------------------------------
# The paper's augmentation (RandAugment 2 layers m=15, mixup 0.5) on the device, in the step.

PAPER_PP = dict(randaug_layers=2, randaug_magnitude=15, mixup_alpha=0.5)


def run_augmented(config, *, num_devices, steps, state=None, start=0, p_step=None):
  """Losses and final unreplicated state of `steps` updates on uint8 / class-index batches."""
  model = tiny_model()
  if state is None:
    state = step_lib.create_train_state(config=config, model=model, rng=jax.random.key(0),
                                        image_size=IMAGE)
  state = replicate(state, num_devices)
  p_step = p_step or step_lib.make_train_step(config=config, model=model,
                                              devices=jax.local_devices()[:num_devices])
  losses = []
  for i in range(start, start + steps):
    rs = np.random.RandomState(100 + i)
    images = rs.randint(0, 256, (GLOBAL_BATCH, IMAGE, IMAGE, 3)).astype(np.uint8)
    labels = rs.randint(0, NUM_CLASSES, GLOBAL_BATCH).astype(np.int32)
    batch = {'images': shard(images, num_devices), 'labels': shard(labels, num_devices)}
    state, metrics = p_step(state, batch, jax.random.key(42))
    losses.append(float(metrics['train_loss'][0]))
  return np.array(losses), unreplicate(state)


def test_paper_augmentation_same_on_8_devices_and_1_device_with_accumulation():
  """8 devices x 2 examples vs 1 device x 16 in 2 microbatches: the same augmented batches."""
  losses8, state8 = run_augmented(make_config(pp=PAPER_PP, **SGD), num_devices=8, steps=3)
  losses1, state1 = run_augmented(make_config(pp=PAPER_PP, accum_steps=2, **SGD),
                                  num_devices=1, steps=3)
  np.testing.assert_allclose(losses8, losses1, rtol=1e-5)
  assert_trees_close(state8.params, state1.params, atol=1e-5)
  plain, _ = run_augmented(make_config(**SGD), num_devices=1, steps=3)
  assert np.abs(plain - losses1).max() > 5e-4  # the augmentation changed the inputs


def test_resumed_run_sees_identical_augmented_batches():
  config = make_config(pp=PAPER_PP, **SGD)
  p_step = step_lib.make_train_step(config=config, model=tiny_model(),
                                    devices=jax.local_devices()[:2])
  losses, state = run_augmented(config, num_devices=2, steps=4, p_step=p_step)
  first, saved = run_augmented(config, num_devices=2, steps=2, p_step=p_step)  # host copy
  rest, resumed = run_augmented(config, num_devices=2, steps=2, state=saved, start=2,
                                p_step=p_step)
  np.testing.assert_array_equal(np.concatenate([first, rest]), losses)
  assert_trees_close(resumed.params, state.params, atol=0)
