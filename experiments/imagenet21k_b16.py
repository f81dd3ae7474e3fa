r"""Mixer-B/16 pre-trained on ImageNet-21k (Table 4 row "B, ImageNet-21k").

The pre-training recipe of the paper (Table 4 and appendix B; `recipes.pretrain_config`,
mixer_flax/paper/recipes.py) with RandAugment 2 layers magnitude 10 and mixup alpha 0.2:
1,036,079 steps of batch 4096 (300 epochs); few-shot ImageNet probes every 10k steps.

Data: ImageNet-21k as a user-built tfds dataset 'imagenet21k' with one split 'full' (not in the
tfds catalog; see mixer_flax/paper/recipes.py for the assumed size); train on `full[51200:]`,
evaluate on the held-out minival `full[:51200]`.

Command:
  python -m mixer_flax.main --config=experiments/imagenet21k_b16.py \
      --workdir=workdirs/imagenet21k_b16

Expected result:
  Pre-training itself is scored on the held-out ImageNet-21k minival only. The paper's numbers come
  after fine-tuning (paper Tables 2-3): ImageNet 80.64 / ReaL 85.80 / Avg-5 92.50, with
  `experiments/finetune.py:Mixer-B_16,<dataset>,i21k,test --config.pretrained_path=<final .npz>`
  for imagenet2012, cifar10, cifar100, oxford_iiit_pet, oxford_flowers102 (CIFAR-10 reference:
  96.82 with the reference code's fine-tuning, vit_jax README).
"""


import ml_collections

from mixer_flax.paper import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The Mixer-B_16 imagenet21k pre-training config (see the module docstring)."""
  return recipes.pretrain_config(model_name='Mixer-B_16', dataset='imagenet21k',
                                   randaug_magnitude=10, mixup_alpha=0.2, arg=arg)
