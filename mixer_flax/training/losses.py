"""Classification losses from a config: softmax and sigmoid cross-entropy (no TensorFlow).

Both return per-example losses `(N,)` for logits `(N, K)` and float targets
`(N, K)` (one-hot, mixup-mixed or multi-hot); the train step averages them.
`sigmoid_xent` sums the K binary cross-entropies per example (the later official
recipe, used with `config.model.head_bias_init = -6.9` so initial sigmoid
outputs are ~1e-3).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

LOSSES = ('softmax_xent', 'sigmoid_xent')


def softmax_xent(logits: jax.Array, labels: jax.Array, *,
                 label_smoothing: float = 0.0) -> jax.Array:
  """Softmax cross-entropy.

  Args:
    logits: `(N, K)`.
    labels: `(N, K)` target distributions (one-hot or mixup-mixed).
    label_smoothing: eps; targets become `(1 - eps) * labels + eps / K`.

  Returns:
    `(N,)` float32 losses.
  """
  labels = labels.astype(jnp.float32)
  if label_smoothing:
    labels = (1.0 - label_smoothing) * labels + label_smoothing / labels.shape[-1]
  return -jnp.sum(labels * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)


def sigmoid_xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Sigmoid (binary, per class) cross-entropy summed over classes.

  Args:
    logits: `(N, K)`.
    labels: `(N, K)` multi-hot (or mixed) targets in [0, 1].

  Returns:
    `(N,)` float32 losses.
  """
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  per_class = labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits)
  return -jnp.sum(per_class, axis=-1)


def get_loss_fn(config: ml_collections.ConfigDict, *,
                train: bool = True) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`(logits (N,K), labels (N,K)) -> (N,)` for `config.loss`; no smoothing when not `train`."""
  name = config.loss
  if name == 'softmax_xent':
    smoothing = float(config.label_smoothing) if train else 0.0
    return lambda logits, labels: softmax_xent(logits, labels, label_smoothing=smoothing)
  if name == 'sigmoid_xent':
    return sigmoid_xent
  raise ValueError(f'config.loss={name!r} is not supported; use one of {LOSSES}.')
