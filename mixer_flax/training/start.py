"""What a run starts from: the model of its config and its initial (or pretrained) train state."""

from __future__ import annotations

import jax
import ml_collections

from mixer_flax import checkpoint, models
from mixer_flax.training import step as step_lib


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The Mixer of `config` with a `num_classes` head (higher-resolution fine-tuning aware)."""
  overrides = {k: v for k, v in config.model.to_dict().items() if v is not None}
  if config.pretrained_path:
    pretrained_size = config.pretrained_image_size
    if config.image_size != pretrained_size:
      overrides.update(checkpoint.finetune_overrides(
          model_name=config.model_name, image_size=config.image_size,
          pretrained_image_size=pretrained_size))
  return models.create_model(config.model_name, num_classes=num_classes, **overrides)


def initial_state(config: ml_collections.ConfigDict, model, rng: jax.Array):
  """Unreplicated train state: from scratch, or with `config.pretrained_path` loaded."""
  state = step_lib.create_train_state(config=config, model=model, rng=rng,
                                      image_size=config.image_size)
  if config.pretrained_path:
    params = checkpoint.load_pretrained(path=config.pretrained_path,
                                        init_params=jax.device_get(state.params))
    state = step_lib.create_train_state(config=config, model=model, rng=rng,
                                        image_size=config.image_size, params=params)
  return state
