"""MLP-Mixer models.

The paper's linen modules (`mixer.py`), faster formulations of the same function
(`formulations.py`, `chunking.py`), named variants (`zoo.py`), intermediate features
(`features.py`).
"""

from mixer_flax.models.features import features
from mixer_flax.models.mixer import MlpMixer
from mixer_flax.models.zoo import MODEL_CONFIGS, OVERRIDABLE, create_model, get_config, num_params

__all__ = ['MlpMixer', 'MODEL_CONFIGS', 'OVERRIDABLE', 'create_model', 'features', 'get_config',
           'num_params']
