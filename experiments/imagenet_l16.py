r"""Mixer-L/16 pre-trained from scratch on ImageNet-1k (Table 4 row "L, ImageNet").

The pre-training recipe of the paper (Table 4 and appendix B; `recipes.pretrain_config`,
mixer_flax/paper/recipes.py) with RandAugment 2 layers magnitude 15 and mixup alpha 0.5:
92,898 steps of batch 4096 (300 epochs); few-shot ImageNet probes every 10k steps.

Data: ImageNet-1k from tfds (`imagenet2012`; put the ILSVRC2012 archives in
`--config.manual_dir`); train on `train[:99%]`, evaluate on the held-out minival `train[99%:]`;
the argument `test` (`imagenet_l16.py:test`) trains on all of `train` and evaluates on
`validation`.

Command:
  python -m mixer_flax.main --config=experiments/imagenet_l16.py \
      --workdir=workdirs/imagenet_l16

Expected result:
  ImageNet top-1 about 72% at 224 px: the released imagenet1k/Mixer-L_16.npz scores 72.1 on
  ImageNet val (an independent evaluation, not ours); the paper reports 71.76 (ImageNet) /
  77.08 (ReaL) after fine-tuning at 224 (paper Tables 2-3): L/16 overfits ImageNet-1k, which is
  the paper's point.
"""


import ml_collections

from mixer_flax.paper import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The Mixer-L_16 imagenet2012 pre-training config (see the module docstring)."""
  return recipes.pretrain_config(model_name='Mixer-L_16', dataset='imagenet2012',
                                   randaug_magnitude=15, mixup_alpha=0.5, arg=arg)
