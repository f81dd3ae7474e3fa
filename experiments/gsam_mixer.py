r"""Mixers trained from scratch on ImageNet-1k with GSAM (the released gs://mixer_models/gsam/).

Zhuang et al., "Surrogate Gap Minimization Improves Sharpness-Aware Training", ICLR 2022
(arXiv 2203.08065): Table 4, the Mixer rows (S/32, S/16, S/8, B/32, B/16), give rho_max,
rho_min, alpha, the lr range, weight decay, base optimizer, epochs, warm-up and schedule;
the rest (batch, loss, head bias, clipping, Inception crop + flip only, eval crop) is the
authors' released GSAM config, big_vision `configs/proj/gsam/vit_i1k_gsam_no_aug.py`.
GSAM in the trainer: `mixer_flax/training/sam.py` (Algorithm 1; rho_t follows the lr).

Argument: the variant (`S_32`, `S_16`, `S_8`, `B_32`, `B_16`; default `B_16`) and optionally
`test` (train on all of `train`, evaluate on `validation`), e.g. `gsam_mixer.py:B_32,test`.

Command:
  python -m mixer_flax.main --config=experiments/gsam_mixer.py:B_16 --workdir=workdirs/gsam_b16 \
      --config.data_dir=/data/tfds --config.manual_dir=/data/imagenet_archives

Batch 4096 does not fit one accelerator: add `--config.accum_steps=N` (the update is the same
for any N: both GSAM passes accumulate all microbatches; the perturbation is per device).

Expected result (Table 1 of the paper, ImageNet top-1 / ReaL): S/32 68.6 / 75.8, S/16 75.0 /
81.7, S/8 76.8 / 83.4, B/32 73.6 / 80.2, B/16 77.8 / 84.0 (`scripts/reproduce_tables.py
--table sam` lists them beside ours).
"""

import ml_collections

from mixer_flax import config as config_lib

# Table 4 of the paper, Mixer rows: (rho_max, rho_min, alpha); adaptive rho False for all.
TABLE4 = {
    'S_32': (0.5, 0.0, 0.2),
    'S_16': (0.5, 0.0, 0.6),
    'S_8': (0.5, 0.1, 0.1),
    'B_32': (0.7, 0.2, 0.05),
    'B_16': (0.5, 0.2, 0.01),
}
IMAGENET_TRAIN = 1_281_167  # tfds imagenet2012 'train'
IMAGENET_MINIVAL_TRAIN = 1_268_355  # its first 99% ('train[:99%]'); the last 1% is minival


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The GSAM recipe of one Mixer variant (see the module docstring)."""
  a = config_lib.parse_arg(arg, positional=('variant',), words={'split': ('test',)},
                           variant='B_16', split='minival')
  if a['variant'] not in TABLE4:
    raise ValueError(f'gsam_mixer.py: variant {a["variant"]!r} is not a Mixer row of the GSAM '
                     f'paper\'s Table 4; choose one of {", ".join(TABLE4)}.')
  rho_max, rho_min, alpha = TABLE4[a['variant']]
  test = a['split'] == 'test'
  c = config_lib.base_config()
  c.model_name = f'Mixer-{a["variant"]}'
  c.model.head_bias_init = -10.0  # big_vision config: init_head_bias
  c.model.stoch_depth = 0.0  # no extra regularisation (big_vision config)
  c.model.dropout = 0.0  # idem

  c.dataset = 'imagenet2012'
  c.num_classes = 1000
  c.train_split = 'train' if test else 'train[:99%]'  # big_vision config: 'train[:99%]'
  c.eval_split = 'validation' if test else 'train[99%:]'  # big_vision: minival 'train[99%:]'
  c.image_size = 224  # big_vision config: inception crop 224
  c.pp.update(crop='inception', flip=True,  # the only augmentation (big_vision pp_train)
              randaug_layers=0, mixup_alpha=0.0,  # no strong augmentation
              eval_mode='resize_small_crop', eval_resize=256)  # big_vision: resize_small(256)
  c.shuffle_buffer = 250_000  # big_vision config: shuffle_buffer_size

  c.batch = 4096  # big_vision config: batch_size
  epochs = 300  # Table 4: Epochs
  c.total_steps = config_lib.steps_for_epochs(
      epochs, num_examples=IMAGENET_TRAIN if test else IMAGENET_MINIVAL_TRAIN, batch=c.batch)
  c.optimizer = 'adam'  # Table 4: base optimizer AdamW (decoupled wd below); b1, b2 0.9, 0.999
  c.base_lr = 3e-3  # Table 4: lr_max
  c.end_lr = 3e-5  # Table 4: lr_min
  c.warmup_steps = 10_000  # Table 4: warm-up steps
  c.decay_type = 'linear'  # Table 4: LR schedule
  c.weight_decay = 0.3  # Table 4: weight decay 0.3, times the lr (big_vision: wd = 0.3 x lr)
  c.grad_norm_clip = 1.0  # big_vision config: grad_clip_norm
  c.loss = 'sigmoid_xent'  # big_vision config: loss
  c.label_smoothing = 0.0  # none

  c.sam.rho = rho_max  # Table 4: rho_max
  c.sam.rho_min = rho_min  # Table 4: rho_min
  c.sam.alpha = alpha  # Table 4: alpha

  c.evals = dict(eval=dict(type='classification', every=2_500))  # big_vision: log_steps 2500
  c.checkpoint_every = 1_000  # big_vision config: checkpoint_steps
  c.progress_every = 50  # big_vision config: log_training_steps
  return c
