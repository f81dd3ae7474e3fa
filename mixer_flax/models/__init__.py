"""MLP-Mixer models.

Linen modules (`mixer.py`), named variants (`zoo.py`), CPU chunking, intermediate features
(`features.py`).
"""

from mixer_flax.models.features import features
from mixer_flax.models.mixer import MlpMixer
from mixer_flax.models.zoo import MODEL_CONFIGS, OVERRIDABLE, create_model, get_config, num_params

__all__ = ['MlpMixer', 'MODEL_CONFIGS', 'OVERRIDABLE', 'create_model', 'features', 'get_config',
           'num_params']
