r"""Speed of Mixer on the current backend: matmul peak, forward and train-step rates.

What is measured and how: `mixer_flax/perf/benchmark.py`.

Examples:
  python scripts/benchmark.py --variant Mixer-B_16 --batch 8,32
  python scripts/benchmark.py --variant Mixer-B_16 --batch 256 --dtype bfloat16 --json out.json
  python scripts/benchmark.py --dtype bfloat16 --batch 512 --modes train --bound --compare_timm
  python scripts/benchmark.py --end_to_end --json e2e.json
"""

from mixer_flax import backends
from mixer_flax.perf import benchmark

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  benchmark.run()
