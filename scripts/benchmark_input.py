r"""Input pipeline throughput (images/s) versus what a training step consumes.

What is measured: `mixer_flax/perf/input_rate.py`.

  python scripts/benchmark_input.py [--config experiments/digits.py] [--batches 50]
      [--data_dir DIR] [--tf_threads N] [--set pp.randaug_layers=2 --set pp.mixup_alpha=0.2]

`--jpeg_folder DIR` instead times the host train pipeline on an ImageNet-like folder
(written into DIR when it is empty: perf/jpeg_folder.py) with the paper's ImageNet settings
(default config experiments/imagenet_b16.py: Inception crop 224, flip, RandAugment 2/15,
mixup 0.5) and, in the same run, without RandAugment and mixup; it prints both rates and
their ratio. RandAugment and mixup run on the device, so the host does the same work:

  python scripts/benchmark_input.py --jpeg_folder /tmp/jpegs --tf_threads 2 --batch 128
"""

from mixer_flax import backends
from mixer_flax.perf import input_rate

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  input_rate.main()
