r"""The trainer's loop (prefetch to device, step, metrics) vs the bare step, without TensorFlow.

What is measured: `mixer_flax/perf/loop.py`.

  python scripts/benchmark_loop.py [--config experiments/imagenet_b16.py] [--variant Mixer-S_16]
      [--batch 512] [--dtype bfloat16] [--every 10] [--intervals 3] [--rounds 2] [--json out.json]
"""

from mixer_flax import backends
from mixer_flax.perf import loop

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  loop.main()
