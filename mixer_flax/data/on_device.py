"""Batch preparation inside the pmapped steps: RandAugment, mixup, label encoding, scaling.

The host pipeline (data/pipeline.py) only decodes, crops, resizes and flips; it ships
uint8 images [D, b, H, W, 3] and integer labels: class indices int32 [D, b], or uint8
multi-hot [D, b, K] where the dataset's label is a list. Inside the step each device
holds [b, ...] and this module turns it into float32 images in [-1, 1] and float32
targets [b, K] (one-hot, multi-hot, or mixed).

Randomness is a function of (rng, step, global example index) only, never of the
device layout, so a resumed run and a run on 1 or 8 devices see identical batches:

  base = fold_in(fold_in(rng, AUG_STREAM), step);  k_example, k_mix = split(base)
  RandAugment of global example g (= device index * b + i): key fold_in(k_example, g)
  mixup: one ratio per step, a ~ Beta(alpha, alpha) from k_mix, lambda = max(a, 1 - a)
         (the un-mixed example dominates, as big_vision's mixup)

AUG_STREAM is above every int32 step, so these keys never meet the dropout keys
fold_in(rng, step). Mixup pairs global examples 2k and 2k + 1: x'_2k = lambda x_2k +
(1 - lambda) x_2k+1 and x'_2k+1 = lambda x_2k+1 + (1 - lambda) x_2k, labels alike; pairs
never straddle devices because b must be even (it mixes within the per-device batch).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mixer_flax.data import augment

AUG_STREAM = 0xA0A0A0A0


class AugmentSpec(NamedTuple):
  """The device-side training augmentation (from config.pp)."""

  num_classes: int
  randaug_layers: int = 0
  randaug_magnitude: float = 0.0
  mixup_alpha: float = 0.0

  @classmethod
  def from_config(cls, config: Any, num_classes: int) -> AugmentSpec:
    """The spec of `config.pp` for a `num_classes` head."""
    pp = config.pp
    return cls(num_classes=int(num_classes), randaug_layers=int(pp.randaug_layers),
               randaug_magnitude=float(pp.randaug_magnitude), mixup_alpha=float(pp.mixup_alpha))


def scale_images(images: jax.Array) -> jax.Array:
  """uint8 -> float32 (x - 127.5) / 127.5 in [-1, 1]; float images are returned as given."""
  if images.dtype == jnp.uint8:
    return (images.astype(jnp.float32) - 127.5) / 127.5
  return images


def encode_labels(labels: jax.Array, num_classes: int, batch_shape: tuple[int, ...]) -> jax.Array:
  """Class indices `batch_shape` -> one-hot; multi-hot or float targets [..., K] -> float32."""
  if labels.shape == tuple(batch_shape):
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  if labels.shape != (*batch_shape, num_classes):
    raise ValueError(f'labels of shape {labels.shape} for a batch of {batch_shape}: expected '
                     f'class indices {batch_shape} or targets {(*batch_shape, num_classes)}.')
  return labels.astype(jnp.float32)


def mixup_ratio(key: jax.Array, alpha: float) -> jax.Array:
  """Mixup ratio max(a, 1 - a) with a ~ Beta(alpha, alpha): float32 scalar in [0.5, 1]."""
  a = jax.random.beta(key, alpha, alpha)
  return jnp.maximum(a, 1.0 - a)


def mix_pairs(x: jax.Array, ratio: jax.Array) -> jax.Array:
  """x'_2k = r x_2k + (1 - r) x_2k+1 and x'_2k+1 = r x_2k+1 + (1 - r) x_2k along axis 0."""
  b = x.shape[0]
  partner = x.reshape(b // 2, 2, *x.shape[1:])[:, ::-1].reshape(x.shape)
  return ratio * x + (1.0 - ratio) * partner


def step_keys(rng: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(example key, mixup key) of a step (module doc)."""
  base = jax.random.fold_in(jax.random.fold_in(rng, AUG_STREAM), step)
  k_example, k_mix = jax.random.split(base)
  return k_example, k_mix


def train_inputs(batch: dict[str, jax.Array], *, spec: AugmentSpec, rng: jax.Array,
                 step: jax.Array, first_index: jax.Array | int) -> tuple[jax.Array, jax.Array]:
  """Augmented float32 images [b, H, W, 3] in [-1, 1] and float32 targets [b, K].

  Args:
    batch: one device's {'images': uint8 [b, H, W, 3], 'labels': int [b] or [b, K]}
      (float images in [-1, 1] are accepted only without RandAugment).
    spec: the augmentation.
    rng: the run's key (typed); step: the global step (int32 scalar).
    first_index: global index of this device's first example (device index * b).
  """
  images, labels = batch['images'], batch['labels']
  b = images.shape[0]
  k_example, k_mix = step_keys(rng, step)
  if spec.randaug_layers > 0:
    if images.dtype != jnp.uint8:
      raise ValueError(f'RandAugment (config.pp.randaug_layers={spec.randaug_layers}) needs '
                       f'uint8 images; got {images.dtype}.')
    keys = jax.vmap(lambda g: jax.random.fold_in(k_example, g))(first_index + jnp.arange(b))
    images = augment.randaugment_batch(images, keys, num_layers=spec.randaug_layers,
                                       magnitude=spec.randaug_magnitude)
  images = scale_images(images)
  labels = encode_labels(labels, spec.num_classes, (b,))
  if spec.mixup_alpha > 0:
    if b % 2:
      raise ValueError(f'Mixup pairs examples within a device: the per-device batch {b} must '
                       'be even (change config.batch or set config.pp.mixup_alpha=0).')
    ratio = mixup_ratio(k_mix, spec.mixup_alpha)
    images, labels = mix_pairs(images, ratio), mix_pairs(labels, ratio)
  return images, labels
