"""MLP-Mixer models: linen modules (`mixer.py`), named variants (`zoo.py`), CPU chunking."""

from mixer_flax.models.mixer import MlpMixer
from mixer_flax.models.zoo import MODEL_CONFIGS, OVERRIDABLE, create_model, get_config, num_params

__all__ = ['MlpMixer', 'MODEL_CONFIGS', 'OVERRIDABLE', 'create_model', 'get_config', 'num_params']
