r"""Top-k classes of image files under a Mixer checkpoint.

Class names come from what ships offline: ImageNet-1k names (1000-class heads)
from tensorflow_datasets, ImageNet-21k heads (21843 classes) as indices (tfds
ships no ImageNet-21k names), own checkpoints with the label names of the
dataset they were trained on (`--dataset`, `--data_dir`/`--folder_root`) or a
`--labels_file`. Images get the evaluation preprocessing of the input pipeline.

Examples:
  python scripts/predict.py --checkpoint imagenet1k/Mixer-B_16.npz cat.jpg dog.png
  python scripts/predict.py --checkpoint imagenet21k/Mixer-B_16.npz --top_k 3 cat.jpg
  python scripts/predict.py --checkpoint workdirs/digits/final.npz --dataset sklearn_digits \
      --image_size 16 --eval_mode resize digit.png
"""

from mixer_flax import backends
from mixer_flax.eval import cli

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  cli.predict_main()
