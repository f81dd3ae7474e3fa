r"""Top-1 / top-5 accuracy of a Mixer checkpoint on a tfds split or an image folder.

Exact: every example of the split is scored once (the last batch is padded and
masked), on all local devices. The architecture is read off the checkpoint.

Examples:
  # Official ImageNet-1k B/16 on the ImageNet validation set (prepared tfds data):
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz \
      --dataset imagenet2012 --split validation --eval_mode resize_small_crop
  # Same model, ImageNet ReaL labels and ImageNet-v2:
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz --dataset imagenet2012_real
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz --dataset imagenet_v2 \
      --split test
  # Own checkpoint on an image folder root/{train,test}/<class>/*.png:
  python scripts/evaluate.py --checkpoint workdirs/digits/final.npz --dataset image_folder \
      --folder_root /data/folder --split test --image_size 16 --eval_mode resize
"""

from mixer_flax import backends
from mixer_flax.eval import cli

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  cli.evaluate_main()
