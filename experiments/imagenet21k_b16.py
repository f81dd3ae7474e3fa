r"""Mixer-B/16 pre-trained on ImageNet-21k (Table 4 row "B, ImageNet-21k").

Reproduces the pre-training recipe of the paper (Table 4 and appendix B): Adam (0.9,
0.999), batch 4096, lr 1e-3 with 10k linear warm-up steps then linear decay to 1e-5, weight decay
0.1 (decoupled, kernels only; our `weight_decay` is multiplied by the lr like AdamW, so 0.1 x 1e-3
= 1e-4 per step at peak = the later official recipe's wd 1e-4), global-norm clip 1, 300 epochs =
ceil(300 x (14,197,122 - 51,200) / 4096) = 1,036,079 steps, 224 px Inception crop + flip,
RandAugment 2 layers magnitude 10, mixup alpha 0.2, stochastic depth 0.1, no dropout, softmax
cross-entropy.

Data: ImageNet-21k as a user-built tfds dataset 'imagenet21k' with one split 'full' (not in the
tfds catalog; see mixer_flax/paper/recipes.py for the assumed size); train on `full[51200:]`,
evaluate on the held-out minival `full[:51200]`.

Few-shot: linear 1/5/10/25-shot ImageNet on the pre-logits every 10k steps (paper section 3).

Command:
  python -m mixer_flax.main --config=experiments/imagenet21k_b16.py \
      --workdir=workdirs/imagenet21k_b16

Batch 4096 does not fit one accelerator: add `--config.accum_steps=N` (the global batch and the
result stay the same; batch must divide by processes x devices x N), and optionally
`--config.model.dtype=bfloat16 --config.optim_dtype=bfloat16` for speed and memory (the paper
numbers are float32).

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
