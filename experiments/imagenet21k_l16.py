r"""Mixer-L/16 pre-trained on ImageNet-21k (Table 4 row "L, ImageNet-21k").

The pre-training recipe of the paper (Table 4 and appendix B; `recipes.pretrain_config`,
mixer_flax/paper/recipes.py) with RandAugment 2 layers magnitude 20 and mixup alpha 0.5:
1,036,079 steps of batch 4096 (300 epochs); few-shot ImageNet probes every 10k steps.

Data: ImageNet-21k as a user-built tfds dataset 'imagenet21k' with one split 'full' (not in the
tfds catalog; see mixer_flax/paper/recipes.py for the assumed size); train on `full[51200:]`,
evaluate on the held-out minival `full[:51200]`.

Command:
  python -m mixer_flax.main --config=experiments/imagenet21k_l16.py \
      --workdir=workdirs/imagenet21k_l16

Expected result:
  Pre-training itself is scored on the held-out ImageNet-21k minival only. The paper's numbers
  come after fine-tuning (paper Tables 2-3): ImageNet 82.89 / ReaL 87.54 / Avg-5 93.63 at 224 and
  ImageNet 83.91 at 448 (`finetune.py:Mixer-L_16,imagenet2012,448,i21k,test`), CIFAR-10
  reference 98.34.
"""


import ml_collections

from mixer_flax.paper import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The Mixer-L_16 imagenet21k pre-training config (see the module docstring)."""
  return recipes.pretrain_config(model_name='Mixer-L_16', dataset='imagenet21k',
                                   randaug_magnitude=20, mixup_alpha=0.5, arg=arg)
