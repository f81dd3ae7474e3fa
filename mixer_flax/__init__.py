"""mixer_flax: MLP-Mixer (Tolstikhin et al., 2021) in JAX/Flax.

`mixer_flax.models` and `mixer_flax.checkpoint` import without TensorFlow; the
input pipeline imports it lazily. Importing the package changes nothing in the
environment: the entry points set the default XLA flags (`backends.apply_xla_flags`).
"""

__version__ = '0.1.0'
