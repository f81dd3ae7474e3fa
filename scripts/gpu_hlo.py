r"""What XLA builds for Mixer on an H100/H200, compiled here without a GPU: GEMM epilogues, bytes.

Needs JAX's CUDA plugin (`pip install "jax[cuda12]"`); details: `mixer_flax/perf/gpu_hlo.py`.

Examples:
  python scripts/gpu_hlo.py --target h200 --batch 1024 --modes forward
  python scripts/gpu_hlo.py --batch 512 --modes grad --formulation snc_md_gelu_remat --json g.json
"""

from mixer_flax import backends
from mixer_flax.perf import gpu_hlo

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  gpu_hlo.run()
