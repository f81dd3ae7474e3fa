r"""Linear few-shot accuracy of a checkpoint's frozen pre-logits (paper section 3).

Closed-form ridge regression to {-1, +1} targets on whitened pre-logits with a
bias feature (`mixer_flax.eval.fewshot`), k examples per class drawn from the train
split, accuracy on the test split, mean over seeds.

Examples:
  # The paper's headline probe: 5-shot ImageNet (train[:10%] holds the shots).
  python scripts/fewshot.py --checkpoint imagenet21k/Mixer-B_16.npz --datasets imagenet2012 \
      --shots 5
  # Several datasets / shots; explicit splits as name:train_split:test_split:
  python scripts/fewshot.py --checkpoint imagenet1k/Mixer-B_16.npz \
      --datasets cifar10,oxford_iiit_pet,oxford_flowers102 --shots 1,5,10,25
  # CPU demo on the bundled digits (own checkpoint from experiments/digits.py):
  python scripts/fewshot.py --checkpoint workdirs/digits/final.npz --datasets sklearn_digits \
      --image_size 16 --eval_mode resize --shots 1,5,10,25
"""

from mixer_flax import backends
from mixer_flax.eval import cli

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  cli.fewshot_main()
