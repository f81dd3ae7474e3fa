"""SAM and GSAM: the sharpness-aware gradient of one train step (pure JAX, no TF).

SAM (Foret et al., 2021) and GSAM (Zhuang et al., ICLR 2022, "Surrogate Gap Minimization
Improves Sharpness-Aware Training", Algorithm 1) replace the gradient g = grad f(w) by

  rho_t  = rho_min + (rho - rho_min) (lr_t - end_lr) / (base_lr - end_lr)   (GSAM step 0)
  e      = rho_t g / (||g|| + eps)                    ascent to the perturbed weights
  g_p    = grad f(w + e)                              gradient there (same batch, same rng)
  g_perp = g - <g, u> u,  u = g_p / (||g_p|| + eps)   part of g orthogonal to g_p (step 3)
  g_sam  = g_p - alpha g_perp                         (step 4)

||.|| is the L2 norm over all parameters, eps = 1e-12. The optimizer (clipping, Adam / SGD,
weight decay) then steps from the unperturbed w with g_sam, so its state and the checkpoints
have the plain layout. SAM is rho_min = None (constant rho_t = rho) and alpha = 0, where
g_sam = g_p. rho_t follows the paper's formula as is, like big_vision's trainer
(`trainers/proj/gsam/gsam.py`): while the warm-up's lr is below end_lr it is below rho_min.
With base_lr == end_lr, rho_t = rho. Cost: two forward/backward passes per step.

Each device perturbs with its own gradient (m-sharpness with m = the per-device batch): g
is the mean over the device's examples (all its microbatches), e, g_p and g_sam are computed
per device and only g_sam is averaged over devices (pmean). This is what the authors' code
does: the SAM reference (google-research/sam, `sync_perturbations=False` by default) and
big_vision's GSAM trainer ("per-worker perturbation"). So the update depends on the device
count, not on `accum_steps`.

Not `optax.contrib.sam` (whose SAM update this one equals: tests/test_training_sam.py): its
adversarial step sees only the incoming gradient, so GSAM's decomposition (which needs g and
g_p together) cannot be expressed in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

__all__ = ['EPS', 'KEYS', 'make_gradient_fn', 'rho_schedule', 'sam_gradient', 'sam_problems']

EPS = 1e-12  # Algorithm 1's epsilon (big_vision: 1e-12)
KEYS = ('rho', 'rho_min', 'alpha')  # config.sam keys (mixer_flax/config.py)

# `grads_at(params) -> (loss, grads)`: the per-device mean loss and gradient (the trainer's
# microbatch accumulation).
GradsAt = Callable[[Any], tuple[jax.Array, Any]]


def _number(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def sam_problems(config: ml_collections.ConfigDict) -> list[str]:
  """Every problem of `config.sam` (`rho=None`: plain training), one per key."""
  sam = config.sam
  problems = [f'config.sam.{k} is unknown; the keys are {", ".join(KEYS)}'
              for k in sam if k not in KEYS]
  rho, rho_min, alpha = sam.get('rho'), sam.get('rho_min'), sam.get('alpha')
  if rho is not None and (not _number(rho) or rho < 0):
    problems.append(f'config.sam.rho={rho!r} must be None (off) or a number >= 0')
  if rho_min is not None and (not _number(rho_min) or rho_min < 0
                              or (_number(rho) and rho_min > rho)):
    problems.append(f'config.sam.rho_min={rho_min!r} must be None (constant rho) or a number '
                    f'in [0, config.sam.rho={rho!r}]')
  if not _number(alpha) or alpha < 0:
    problems.append(f'config.sam.alpha={alpha!r} must be a number >= 0 (0: SAM)')
  if rho is None and (rho_min is not None or (_number(alpha) and alpha)):
    problems.append(f'config.sam.rho is None (SAM off) but config.sam.rho_min={rho_min!r} / '
                    f'config.sam.alpha={alpha!r} are set; set config.sam.rho (GSAM: rho_max)')
  return problems


def rho_schedule(config: ml_collections.ConfigDict,
                 lr_schedule: optax.Schedule) -> Callable[[jax.Array], jax.Array]:
  """`step -> rho_t`: GSAM's radius, linear in the learning rate of that step (module doc)."""
  sam = config.sam
  rho = float(sam.rho)
  rho_min = sam.rho_min
  lr_max, lr_min = float(config.base_lr), float(config.end_lr)
  if rho_min is None or lr_max == lr_min:
    return lambda step: jnp.float32(rho)
  slope = (rho - float(rho_min)) / (lr_max - lr_min)
  return lambda step: (float(rho_min) + slope * (lr_schedule(step) - lr_min)).astype(jnp.float32)


def _scale(tree: Any, c: jax.Array) -> Any:
  return jax.tree_util.tree_map(lambda x: c * x, tree)


def _inner(a: Any, b: Any) -> jax.Array:
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                             jax.tree_util.tree_leaves(b), strict=True))


def sam_gradient(grads_at: GradsAt, params: Any, *, rho: jax.Array,
                 alpha: float) -> tuple[jax.Array, Any]:
  """`(clean loss, g_sam)` on this device (module doc); `alpha == 0.0` (static): SAM."""
  loss, grads = grads_at(params)
  scale = rho / (optax.global_norm(grads) + EPS)
  perturbed = jax.tree_util.tree_map(lambda w, g: w + scale * g, params, grads)
  _, grads_p = grads_at(perturbed)
  if not alpha:
    return loss, grads_p
  unit_p = _scale(grads_p, 1.0 / (optax.global_norm(grads_p) + EPS))
  along = _inner(grads, unit_p)
  g_perp = jax.tree_util.tree_map(lambda g, u: g - along * u, grads, unit_p)
  return loss, jax.tree_util.tree_map(lambda gp, o: gp - alpha * o, grads_p, g_perp)


def make_gradient_fn(config: ml_collections.ConfigDict, lr_schedule: optax.Schedule
                     ) -> Callable[[GradsAt, Any, jax.Array], tuple[jax.Array, Any]] | None:
  """`(grads_at, params, step) -> (loss, g_sam)` per device, or None when SAM is off."""
  if config.sam.rho is None:
    return None
  rho_at, alpha = rho_schedule(config, lr_schedule), float(config.sam.alpha)

  def gradient(grads_at: GradsAt, params: Any, step: jax.Array) -> tuple[jax.Array, Any]:
    return sam_gradient(grads_at, params, rho=rho_at(step), alpha=alpha)
  return gradient
