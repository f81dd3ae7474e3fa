r"""Input pipeline throughput (images/s) versus what a training step consumes.

What is measured: `mixer_flax/perf/input_rate.py`.

  python scripts/benchmark_input.py [--config experiments/digits.py] [--batches 50]
      [--data_dir DIR] [--tf_threads N] [--set pp.randaug_layers=2 --set pp.mixup_alpha=0.2]
"""

from mixer_flax.perf import input_rate

if __name__ == '__main__':
  input_rate.main()
