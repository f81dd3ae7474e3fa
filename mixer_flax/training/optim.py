"""Learning-rate schedules and optax optimizers built from a config (no TensorFlow).

Config keys read (documented in mixer_flax/config.py):

  base_lr, warmup_steps, total_steps, decay_type ('linear' | 'cosine'), end_lr
  optimizer ('adam' | 'sgd'), momentum (sgd), weight_decay, grad_norm_clip,
  optim_dtype (dtype of Adam's first moment / the SGD momentum buffer; 'bfloat16' halves
  that memory: docs/performance.md, "Memory").

Schedule. `lr(step)` for the update that produces step `step + 1` (optax counts
updates from 0):

  warm-up   step < warmup_steps:  base_lr * step / warmup_steps
  decay     otherwise, with t = (step - warmup_steps) / (total_steps - warmup_steps)
            clipped to [0, 1]:
            linear: base_lr + (end_lr - base_lr) * t
            cosine: end_lr + (base_lr - end_lr) * (1 + cos(pi t)) / 2

As both reference schedules (big_vision's and vit_jax's `create_learning_rate_schedule`, the
multiplier min(1, step / warmup_steps) of an optax count from 0): the first update runs at
lr 0 and lr reaches base_lr at step warmup_steps, where the decay starts. `end_lr` is
absolute (big_vision's `linear_end` multiplies the peak: end_lr = linear_end * base_lr). With
warmup_steps >= total_steps (short test runs) the whole run is warm-up.

Weight decay convention (decoupled, kernels only). `weight_decay` is
multiplied by the *scheduled learning rate*, as in AdamW / `optax.adamw`:

  params <- params - lr(step) * (adam_direction + weight_decay * params)

only for parameters named 'kernel' (Dense and stem kernels; not biases,
LayerNorm scales or biases). With this convention the paper's Table 4 value is
used as is: wd 0.1 with lr 1e-3 decays kernels by 0.1 * 1e-3 = 1e-4 per step at
peak lr, which is the "wd 1e-4 = 0.1 x lr" of the later official (big_vision)
recipe, whose `wd` is multiplied by the schedule's 0..1 multiplier only. To
reproduce a big_vision config with `wd=W` and `lr=L`, set
`weight_decay = W / L`.

Gradient clipping by global norm (`grad_norm_clip`; None or 0 disables) is
applied to the averaged gradient before the optimizer.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

DECAY_TYPES = ('linear', 'cosine')
OPTIMIZERS = ('adam', 'sgd')
OPTIM_DTYPES = ('float32', 'bfloat16')

# Adam's moment decay rates (paper appendix B: b1 0.9, b2 0.999).
ADAM_B1 = 0.9
ADAM_B2 = 0.999


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up then linear or cosine decay (see the module docstring).

  Args:
    config: reads `base_lr`, `warmup_steps`, `total_steps`, `decay_type`, `end_lr`.

  Returns:
    A function `step (int32 scalar) -> lr (float32 scalar)`, traceable by jit.
  """
  base_lr, warmup, total = float(config.base_lr), int(config.warmup_steps), int(config.total_steps)
  decay_type, end_lr = config.decay_type, float(config.end_lr)
  decay_steps = max(total - warmup, 1)

  def schedule(step: jax.Array) -> jax.Array:
    step = jnp.asarray(step, jnp.float32)
    warm = base_lr * step / max(warmup, 1)  # lr 0 at step 0: big_vision/vit_jax utils.py
    t = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
    if decay_type == 'linear':
      decayed = base_lr + (end_lr - base_lr) * t
    else:
      decayed = end_lr + (base_lr - end_lr) * 0.5 * (1.0 + jnp.cos(math.pi * t))
    return jnp.where(step < warmup, warm, decayed).astype(jnp.float32)

  return schedule


def kernel_mask(params: Any) -> Any:
  """A tree like `params` with True exactly at leaves named 'kernel'."""
  def is_kernel(path, _):
    last = path[-1]
    name = getattr(last, 'key', getattr(last, 'name', None))
    return name == 'kernel'
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
  """Builds the optimizer: clip -> Adam or SGD-momentum -> decoupled wd -> -lr.

  Args:
    config: reads `optimizer`, `grad_norm_clip`, `weight_decay`, `momentum` (sgd),
      `optim_dtype` and the schedule keys.
    schedule: the learning-rate schedule; default `make_schedule(config)`.

  Returns:
    An `optax.GradientTransformation` whose `update` needs `params` (for the
    weight decay).
  """
  schedule = schedule or make_schedule(config)
  name, dtype = config.optimizer, jnp.dtype(config.optim_dtype)
  clip, weight_decay = config.grad_norm_clip, float(config.weight_decay)

  parts = []
  if clip:
    parts.append(optax.clip_by_global_norm(float(clip)))
  if name == 'adam':
    parts.append(optax.scale_by_adam(b1=ADAM_B1, b2=ADAM_B2, mu_dtype=dtype))
  else:
    momentum = float(config.momentum)
    if momentum:
      parts.append(optax.trace(decay=momentum, nesterov=False, accumulator_dtype=dtype))
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay, mask=kernel_mask))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)
