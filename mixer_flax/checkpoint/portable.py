"""A portable inference artifact: the classifier as a serialized `jax.export` (StableHLO) module.

The parameters are baked in as constants and the batch dimension is symbolic,
so the file runs on any batch size with plain JAX -- no mixer_flax, no Flax:

    from jax import export
    exported = export.deserialize(open('mixer.jax_export', 'rb').read())
    logits = exported.call(images)  # images: float32 (N, H, W, 3) in [-1, 1]

Lowered for the `platforms` asked for (default: cpu and cuda; lowering needs no
such device). `jax.export` keeps serialized modules loadable by later JAX
versions for a documented compatibility window (6 months of jaxlib releases).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from mixer_flax import fileio
from mixer_flax.models import formulations

__all__ = ['export_classifier', 'save_exported']

DEFAULT_PLATFORMS = ('cpu', 'cuda')


def export_classifier(model: Any, params: Mapping[str, Any], *, image_size: tuple[int, int],
                      platforms: Sequence[str] = DEFAULT_PLATFORMS,
                      with_features: bool = False) -> jax.export.Exported:
  """Exports `images (b, H, W, 3) float32 -> logits (b, K) float32` with a symbolic batch b.

  Args:
    model: an `MlpMixer` (its formulation pinned, so inference is not chunked).
    params: its parameters (baked into the module as constants).
    image_size: (H, W) of the inputs.
    platforms: lowering targets ('cpu', 'cuda', 'rocm', 'tpu').
    with_features: return `(logits, pre_logits)` instead of logits.
  """
  model = formulations.pinned(model)  # the symbolic batch cannot be cut into chunks
  params = jax.tree_util.tree_map(jnp.asarray, params)

  def classify(images: jax.Array):
    out = model.apply({'params': params}, images, return_prelogits=with_features)
    return out

  (batch,) = jax.export.symbolic_shape('b')
  spec = jax.ShapeDtypeStruct((batch, *image_size, 3), jnp.float32)
  return jax.export.export(jax.jit(classify), platforms=tuple(platforms))(spec)


def save_exported(path: str, exported: jax.export.Exported, *,
                  metadata: Mapping[str, Any]) -> None:
  """Writes the serialized module to `path` and `metadata` (+ shapes) to `path + '.json'`."""
  fileio.write_atomic(path, exported.serialize(), what='the exported module')
  info = dict(metadata, platforms=list(exported.platforms),
              inputs=[str(a) for a in exported.in_avals],
              outputs=[str(a) for a in exported.out_avals])
  fileio.write_atomic(path + '.json', json.dumps(info, indent=2),
                      what="the exported module's description")
