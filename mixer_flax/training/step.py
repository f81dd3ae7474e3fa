"""Train state and the pmapped train / eval steps (pure JAX, no TF).

Data parallelism: `jax.pmap` over local devices with axis name 'batch'. Each
device receives `per_device = batch // (process_count * local_devices)`
examples per step; with `accum_steps = A` it splits them into A equal
microbatches (`jax.lax.scan`), averages the A gradients, then averages over
devices (`pmean`), so the update equals the one of a single device seeing
the whole global batch (up to float rounding). With `config.sam.rho` set, each device's
gradient is SAM's / GSAM's (`training/sam.py`: perturbed with that device's own gradient)
before the `pmean`.

Randomness (dropout, stochastic depth) is reproducible and resume-safe: the
caller passes a key `rng`, either one unreplicated key (typed, or raw uint32
key data `(2,)`) or the same key replicated over devices (`[D]` typed /
`[D, 2]` raw); it may be constant or already depend on the step. Step `s`,
device `d`, microbatch `m` uses `fold_in(fold_in(fold_in(rng, s), d), m)`.

Non-finite guard: when the averaged loss or gradient norm is NaN/Inf the
step returns the input state unchanged (step counter included) and
`metrics['finite'] == False`, so the caller can stop with a clear error and
still holds (and may save) the last good state.

Inputs: the host ships uint8 images and integer labels; both steps turn them into
float32 [-1, 1] images and float32 targets on the device (`data.on_device`), and the
train step first applies the `config.pp` augmentation (RandAugment, mixup) to the whole
per-device batch, before it is split into microbatches. Its randomness depends on
(rng, step, global example index) only, so 1 or 8 devices and resumed runs agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mixer_flax.data import on_device
from mixer_flax.training import optim, sam
from mixer_flax.training.losses import get_loss_fn

__all__ = ['TrainState', 'create_train_state', 'make_train_step', 'make_eval_step']


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (a pytree; replicate it for pmap).

  Attributes:
    step: int32 scalar, number of updates applied so far.
    params: the model parameters (nested dict, float32).
    opt_state: the optax optimizer state.
  """

  step: jax.Array
  params: Any
  opt_state: Any


# ---------------------------------------------------------------------------
# State.

def create_train_state(*, config: ml_collections.ConfigDict, model: nn.Module, rng: jax.Array,
                       image_size: int, params: Any = None,
                       tx: optax.GradientTransformation | None = None) -> TrainState:
  """Initialises parameters (unless given) and the optimizer state.

  Args:
    config: the run config (optimizer keys, see `optim.make_optimizer`).
    model: the Mixer module.
    rng: PRNG key for parameter init (unused when `params` is given).
    image_size: input side used to trace the init (sets the token count S).
    params: existing parameters (e.g. from `checkpoint.load_pretrained`);
      None initialises from scratch.
    tx: the optimizer; default `optim.make_optimizer(config)`.

  Returns:
    An unreplicated `TrainState` with `step == 0`.
  """
  tx = tx or optim.make_optimizer(config)
  if params is None:
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    params = jax.jit(lambda r: model.init(r, dummy, train=False)['params'])(rng)
  else:
    params = jax.tree_util.tree_map(jnp.asarray, params)
  params = flax.core.unfreeze(params)
  opt_state = jax.jit(tx.init)(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state)


# ---------------------------------------------------------------------------
# Steps.

def _microbatch_grads(loss_of: Callable, params: Any, images: jax.Array, labels: jax.Array,
                      rng: jax.Array, accum_steps: int) -> tuple[jax.Array, Any]:
  """Mean loss and gradient over `accum_steps` equal microbatches of `images (B,H,W,3)`."""
  grad_fn = jax.value_and_grad(loss_of)
  if accum_steps == 1:
    return grad_fn(params, images, labels, jax.random.fold_in(rng, 0))
  b = images.shape[0]  # a multiple of accum_steps (config.validate)
  images = images.reshape((accum_steps, b // accum_steps) + images.shape[1:])
  labels = labels.reshape((accum_steps, b // accum_steps) + labels.shape[1:])

  def body(carry, xs):
    loss_sum, grad_sum = carry
    i, imgs, lbls = xs
    loss, grads = grad_fn(params, imgs, lbls, jax.random.fold_in(rng, i))
    return (loss_sum + loss, jax.tree_util.tree_map(jnp.add, grad_sum, grads)), None

  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  (loss_sum, grad_sum), _ = jax.lax.scan(
      body, (jnp.zeros((), jnp.float32), zeros), (jnp.arange(accum_steps), images, labels))
  scale = 1.0 / accum_steps
  return loss_sum * scale, jax.tree_util.tree_map(lambda g: g * scale, grad_sum)


def make_train_step(*, config: ml_collections.ConfigDict, model: nn.Module,
                    tx: optax.GradientTransformation | None = None,
                    devices: Sequence[jax.Device] | None = None) -> Callable:
  """Builds the pmapped, state-donating train step.

  Args:
    config: reads `accum_steps`, `loss`, `label_smoothing`, the optimizer
      / schedule keys, `sam` (SAM / GSAM, `training/sam.py`) and the device
      augmentation `pp.randaug_layers`, `pp.randaug_magnitude`, `pp.mixup_alpha`.
    model: the Mixer module (dropout / stochastic depth use rng 'dropout').
    tx: the optimizer; default `optim.make_optimizer(config)`. Must be the one
      used by `create_train_state`.
    devices: devices to pmap over (default: all local devices).

  Returns:
    `step(state, batch, rng) -> (state, metrics)`:
      state: `TrainState` replicated over the devices (donated).
      batch: `{'images': uint8 [D, per_device, H, W, 3], 'labels': int
        [D, per_device] class indices or [D, per_device, K] multi-hot}`; float32
        images in [-1, 1] and float targets [D, per_device, K] are accepted
        when no RandAugment is configured.
      rng: a PRNG key, unreplicated or replicated over the devices, typed or
        raw uint32 key data (see the module docstring).
      metrics: replicated float32 scalars `train_loss` (global mean),
        `learning_rate` (of this update), `grad_norm` (averaged gradient,
        before clipping), `param_norm` (after the update), `finite` (1.0 when
        loss and gradients are finite; 0.0 means the state was left
        unchanged). Nothing is fetched to the host.
  """
  schedule = optim.make_schedule(config)
  tx = tx or optim.make_optimizer(config, schedule)
  loss_fn = get_loss_fn(config, train=True)
  accum_steps = int(config.accum_steps)
  augment = on_device.AugmentSpec.from_config(config, model.num_classes)
  sam_gradient = sam.make_gradient_fn(config, schedule)  # None: plain gradient

  def loss_of(params, images, labels, rng):
    logits = model.apply({'params': params}, images, train=True, rngs={'dropout': rng})
    return jnp.mean(loss_fn(logits, labels))

  def step(state: TrainState, batch: dict, rng: jax.Array):
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.wrap_key_data(rng)
    per_device = batch['images'].shape[0]
    images, labels = on_device.train_inputs(
        batch, spec=augment, rng=rng, step=state.step,
        first_index=jax.lax.axis_index('batch') * per_device)
    rng = jax.random.fold_in(rng, state.step)
    rng = jax.random.fold_in(rng, jax.lax.axis_index('batch'))
    def grads_at(params):
      return _microbatch_grads(loss_of, params, images, labels, rng, accum_steps)
    loss, grads = (grads_at(state.params) if sam_gradient is None
                   else sam_gradient(grads_at, state.params, state.step))
    loss, grads = jax.lax.pmean((loss, grads), axis_name='batch')
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
    new_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old),
                                       new_state, state)
    metrics = {
        'train_loss': loss,
        'learning_rate': schedule(state.step),
        'grad_norm': grad_norm,
        'param_norm': optax.global_norm(new_state.params),
        'finite': finite.astype(jnp.float32),
    }
    return new_state, metrics

  kwargs = dict(axis_name='batch', donate_argnums=(0,), devices=devices)
  step_bcast = jax.pmap(step, in_axes=(0, 0, None), **kwargs)  # one key for all devices
  step_repl = jax.pmap(step, in_axes=(0, 0, 0), **kwargs)  # key replicated over devices

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
    replicated = rng.ndim == (1 if typed else 2)
    return (step_repl if replicated else step_bcast)(state, batch, rng)

  return train_step


def make_eval_step(*, model: nn.Module, config: ml_collections.ConfigDict,
                   devices: Sequence[jax.Device] | None = None) -> Callable:
  """Builds the pmapped eval step.

  Args:
    model: the Mixer module (run with `train=False`).
    config: reads `loss` (the eval loss has no label smoothing).
    devices: devices to pmap over (default: all local devices).

  Returns:
    `eval_step(params, batch) -> sums`: `params` replicated; `batch` as for
    training plus optional `'mask': [D, per_device]` (0 on padding; absent
    means all ones). `sums` are replicated float32 scalars summed over all
    devices: `correct` (labels[argmax logits] > 0, which also scores
    multi-label ReaL targets), `correct_top5` (any of the top-5 logits has
    label > 0; top-K when K < 5), `loss` (sum of per-example losses) and
    `count` (number of real examples).
  """
  loss_fn = get_loss_fn(config, train=False)

  def eval_step(params, batch):
    images = on_device.scale_images(batch['images'])
    logits = model.apply({'params': params}, images, train=False)
    labels = on_device.encode_labels(batch['labels'], logits.shape[-1], logits.shape[:1])
    mask = batch.get('mask')
    mask = jnp.ones(logits.shape[:1], jnp.float32) if mask is None else mask.astype(jnp.float32)
    top1 = jnp.argmax(logits, axis=-1)
    hit1 = jnp.take_along_axis(labels, top1[:, None], axis=-1)[:, 0] > 0
    k = min(5, logits.shape[-1])
    _, topk = jax.lax.top_k(logits, k)
    hitk = jnp.any(jnp.take_along_axis(labels, topk, axis=-1) > 0, axis=-1)
    sums = {
        'correct': jnp.sum(hit1 * mask),
        'correct_top5': jnp.sum(hitk * mask),
        'loss': jnp.sum(jnp.where(mask > 0, loss_fn(logits, labels), 0.0)),
        'count': jnp.sum(mask),
    }
    return jax.lax.psum(sums, axis_name='batch')

  return jax.pmap(eval_step, axis_name='batch', devices=devices)
