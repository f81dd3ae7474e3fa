r"""Input pipeline throughput (images/s) versus what a training step consumes.

Measures, for one experiment config (default: experiments/digits.py):
  1. the train iterator alone (numpy batches, no device prefetch),
  2. the eval iterator alone (one pass),
  3. unless --no-step, the pmapped train step on a fixed batch (what the
     trainer consumes), and the ratio pipeline / step.

  python scripts/benchmark_input.py [--config experiments/digits.py] [--batches 50]
      [--data_dir DIR] [--tf_threads N] [--set pp.randaug_layers=2 --set pp.mixup_alpha=0.2]
"""

from mixer_flax.perf import input_rate

if __name__ == '__main__':
  input_rate.main()
