r"""Mixer-B/16 pre-trained from scratch on ImageNet-1k (Table 4 row "B, ImageNet").

The pre-training recipe of the paper (Table 4 and appendix B; `recipes.pretrain_config`,
mixer_flax/paper/recipes.py) with RandAugment 2 layers magnitude 15 and mixup alpha 0.5:
92,898 steps of batch 4096 (300 epochs); few-shot ImageNet probes every 10k steps.

Data: ImageNet-1k from tfds (`imagenet2012`; put the ILSVRC2012 archives in
`--config.manual_dir`); train on `train[:99%]`, evaluate on the held-out minival `train[99%:]`;
the argument `test` (`imagenet_b16.py:test`) trains on all of `train` and evaluates on
`validation`.

Command:
  python -m mixer_flax.main --config=experiments/imagenet_b16.py \
      --workdir=workdirs/imagenet_b16

Expected result:
  ImageNet top-1 about 76.5% at 224 px: the released imagenet1k/Mixer-B_16.npz scores 76.6 on
  ImageNet val (resize 256, central crop 224; an independent evaluation, not ours). The paper's
  76.44 (ImageNet) / 82.36 (ReaL) (paper Tables 2-3) is after fine-tuning that checkpoint
  on ImageNet at 224: `experiments/finetune.py:Mixer-B_16,imagenet2012,i1k,test` with
  `--config.pretrained_path=<the final .npz of this run>`. The later official recipe (sigmoid
  loss, `--config.loss=sigmoid_xent --config.model.head_bias_init=-6.9`) reports 76.3
  (big_vision's `mlp_mixer_i1k` config).
"""


import ml_collections

from mixer_flax.paper import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The Mixer-B_16 imagenet2012 pre-training config (see the module docstring)."""
  return recipes.pretrain_config(model_name='Mixer-B_16', dataset='imagenet2012',
                                   randaug_magnitude=15, mixup_alpha=0.5, arg=arg)
