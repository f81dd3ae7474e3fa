"""The run config as plain data: every trainer key with its default and meaning.

Imports nothing from mixer_flax, so experiment files and tools read it without starting JAX.
The checks that need the model, data or augmentation modules are in `validate.py`.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
import math
import os
import re
import tokenize
from typing import Any

import ml_collections
from ml_collections import config_dict

TRAIN_CROPS = ('inception', 'resize')  # config.pp.crop
EVAL_MODES = ('resize_small_crop', 'resize_crop', 'resize')  # config.pp.eval_mode

# Keys of earlier versions: `validate` and the command line name their replacement.
REPLACED_KEYS = {
    'eval_every': 'config.evals.<name>.every (e.g. config.evals.eval.every)',
    'fewshot': "an evaluator entry: config.evals.fewshot = dict(type='fewshot', every=..., "
               'datasets=(...))',
    'pp.randaug_mode': 'nothing: the backend picks the implementation (mixer_flax/backends.py)',
    'pp.randaug_histogram': 'nothing: the backend picks the implementation '
                            '(mixer_flax/backends.py)',
}


def base_config() -> ml_collections.ConfigDict:
  """Every trainer key with a neutral default (float32, no augmentation, no weight decay)."""
  c = ml_collections.ConfigDict()
  c.model_name = 'Mixer-B_16'  # a key of mixer_flax.models.MODEL_CONFIGS
  c.model = ml_collections.ConfigDict(dict(  # what create_model changes on the variant
      stoch_depth=0.0,  # stochastic depth rate of the last block (linear in the block index)
      dropout=0.0,  # dropout after each MLP's GELU and output
      head_bias_init=0.0,  # initial head bias (-6.9 with sigmoid_xent)
      dtype='float32',  # computation dtype: float32 | bfloat16 | float16 (params stay float32)
      tokens_mlp_dim=config_dict.placeholder(int),  # D_S (None: the variant's)
      remat=False,  # recompute each block in the backward pass (memory for compute)
  ))
  c.pretrained_path = config_dict.placeholder(str)  # checkpoint to fine-tune from (any URL)
  c.pretrained_image_size = 224  # resolution the pretrained checkpoint was trained at

  c.dataset = 'imagenet2012'  # tfds name, or 'image_folder'
  c.folder_root = config_dict.placeholder(str)  # image_folder: root/<split>/<class>/*
  c.data_dir = config_dict.placeholder(str)  # tfds data_dir (None: tfds' default)
  c.manual_dir = config_dict.placeholder(str)  # tfds manual_dir (ImageNet archives)
  c.train_split = 'train[:99%]'  # tfds split string
  c.eval_split = 'train[99%:]'  # split of classification evaluators that name none
  c.num_classes = config_dict.placeholder(int)  # head width (None: the dataset's)
  c.image_key = 'image'  # tfds image feature
  c.label_key = 'label'  # tfds label feature (e.g. 'label_azimuth' of smallnorb)
  c.record_fn = config_dict.placeholder(str)  # 'module:fn': tfds example -> {image, label}
  c.image_size = 224  # train crop and eval crop side (px)
  c.pp = ml_collections.ConfigDict(dict(  # preprocessing: host crops, device augmentation
      crop='inception',  # train crop: 'inception' (random area/aspect) | 'resize'
      area_min=0.05,  # smallest Inception-crop area (fraction of the image)
      flip=True,  # random horizontal flip
      randaug_layers=0,  # RandAugment ops per image (0: off)
      randaug_magnitude=0,  # RandAugment magnitude m (0..30; paper: 10, 15, 20)
      mixup_alpha=0.0,  # mixup Beta(alpha, alpha) (0: off)
      eval_mode='resize_small_crop',  # 'resize_small_crop' | 'resize_crop' | 'resize'
      eval_resize=256,  # side resized to before the central crop (>= image_size)
  ))
  c.shuffle_buffer = 50_000  # records in the train shuffle buffer
  c.prefetch = 2  # batches placed on the devices ahead of the step
  c.tf_threads = 0  # tf.data private threadpool size (0: half the cores, <= 16)

  c.batch = 512  # global train batch (all processes and devices)
  c.batch_eval = 512  # global eval batch
  c.accum_steps = 1  # microbatches per device per step (gradient accumulation)
  c.total_steps = 10_000  # optimizer updates
  c.base_lr = 0.03  # peak learning rate
  c.warmup_steps = 500  # linear warm-up steps (>= total_steps: the whole run warms up)
  c.decay_type = 'cosine'  # 'cosine' | 'linear' decay to end_lr after the warm-up
  c.end_lr = 0.0  # learning rate at the last step (absolute)
  c.optimizer = 'sgd'  # 'sgd' (momentum) | 'adam'
  c.weight_decay = 0.0  # decoupled, kernels only, multiplied by the scheduled lr
  c.momentum = 0.9  # SGD momentum (0 disables it)
  c.optim_dtype = 'float32'  # Adam first moment / SGD momentum dtype ('bfloat16' halves it)
  c.grad_norm_clip = 1.0  # global-norm gradient clipping (None or 0 disables it)
  c.loss = 'softmax_xent'  # 'softmax_xent' | 'sigmoid_xent'
  c.label_smoothing = 0.0  # softmax_xent only
  # SAM / GSAM (training/sam.py): a second forward/backward pass per step when rho is set.
  c.sam = ml_collections.ConfigDict(dict(
      rho=config_dict.placeholder(float),  # perturbation radius (GSAM: rho_max); None: off
      rho_min=config_dict.placeholder(float),  # GSAM: rho at end_lr, linear in lr; None: rho
      alpha=0.0))  # GSAM: weight of the ascent orthogonal to the perturbed gradient; 0: SAM

  # What runs on the parameters during training: name -> dict(type, every, options).
  # Types and options: mixer_flax/eval (classification: dataset, split, data_dir, batch, pp;
  # fewshot: datasets, shots, seeds, l2, image_size, batch, data_dir, pp).
  c.evals = ml_collections.ConfigDict(dict(
      eval=dict(  # top-1 / top-5 / loss on eval_split (metrics eval_accuracy, ...)
          type='classification',  # evaluator: 'classification' | 'fewshot' (mixer_flax/eval)
          every=1_000,  # steps between runs; every evaluator also runs at the end
      )))
  c.checkpoint_every = 1_000  # steps between orbax checkpoints
  c.keep_checkpoints = 3  # newest checkpoints kept
  c.progress_every = 100  # steps between progress lines / train metrics
  c.seed = 0  # parameter init, data order and dropout randomness
  return c


def eval_resize_for(image_size: int) -> int:
  """Shorter side to resize to before the central crop: 256 for 224 (ratio 8/7)."""
  return image_size * 8 // 7


def dotted_leaves(tree: Any, prefix: str = '') -> dict[str, Any]:
  """`{'pp.crop': leaf, ...}` of a nested dict (a config's `to_dict()`); `{}` is a leaf."""
  if isinstance(tree, dict) and tree:
    return {key: leaf for k, v in tree.items()
            for key, leaf in dotted_leaves(v, f'{prefix}{k}.').items()}
  return {prefix[:-1]: tree}


def steps_for_epochs(epochs: float, *, num_examples: int, batch: int) -> int:
  """Steps of `batch` examples that cover `epochs` passes over `num_examples` (rounded up)."""
  return math.ceil(epochs * num_examples / batch)


def parse_arg(arg: str | None, *, positional: tuple[str, ...] = (),
              words: dict[str, tuple[str, ...]] | None = None, **defaults: Any) -> dict[str, Any]:
  """Parses an experiment file's argument: the one grammar of `file.py:ARG`.

  ARG is a list of items separated by ',' or ':'. An item is `key=value`, a word of
  `words[key]` (e.g. `test` for `words={'split': ('test',)}`, which sets `split` to that
  word), or else the next of the `positional` keys. Values take the type of the key's
  default (ints stay ints). E.g. 'Mixer-B_16,cifar10,448,test' or 'patch_pixel:300'.

  Returns:
    `defaults` updated with the parsed values.
  """
  out, words, queue = dict(defaults), words or {}, list(positional)
  for item in [t.strip() for t in re.split('[,:]', arg or '') if t.strip()]:
    key, eq, value = item.partition('=')
    if not eq:
      key = next((k for k, allowed in words.items() if item in allowed), None)
      if key is None:
        if not queue:
          raise ValueError(f'Config argument {arg!r}: item {item!r} is not understood; '
                           f'expected {", ".join(positional) or "no positional values"}, '
                           f'words {words} or key=value.')
        key = queue.pop(0)
      value = item
    if key not in out:
      raise ValueError(f'Config argument {arg!r}: unknown key {key!r}; known: {sorted(out)}.')
    try:
      out[key] = type(out[key])(value) if isinstance(out[key], (int, float)) else value
    except ValueError as e:
      raise ValueError(f'Config argument {arg!r}: {key}={value!r} is not a number.') from e
  return out


def load_experiment(spec: str) -> ml_collections.ConfigDict:
  """`get_config(ARG)` of experiment file `spec` = 'file.py[:ARG]', as `--config=` loads it.

  A relative path that does not exist from the working directory is looked up from the
  repository root.
  """
  path, sep, arg = spec.partition('.py:')
  path = path + '.py' if sep else spec
  if not os.path.exists(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(os.path.join(root, path)):
      raise FileNotFoundError(f'Experiment file {path} does not exist (spec {spec!r}).')
    path = os.path.join(root, path)
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f'experiment_{name}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if sep else module.get_config()


def key_comments() -> dict[str, str]:
  """'key' or 'group.key' -> its comment in `base_config` (what `--dry_run` prints).

  Read from this file's source, so the comments stay the one documentation of every key: a
  trailing comment, else the first comment line right above the assignment.
  """
  return _assignment_comments(base_config, lambda t: getattr(t, 'attr', None))


def option_comments(cls: type) -> dict[str, str]:
  """Option -> its trailing comment in the `OPTIONS = dict(...)` of an evaluator class."""
  found = _assignment_comments(cls, lambda t: 'OPTIONS' if getattr(t, 'id', '') == 'OPTIONS'
                               else None)
  return {k.split('.', 1)[1]: v for k, v in found.items() if '.' in k}


def _assignment_comments(obj: Any, key_of) -> dict[str, str]:
  """Comments of the assignments in `obj`'s source that `key_of(target)` names.

  The keywords of their `dict(...)` values are 'key.keyword'.
  """
  source = inspect.getsource(obj)
  lines = source.splitlines()
  notes = {}  # line -> (comment text, whether code precedes it on the line)
  for t in tokenize.generate_tokens(io.StringIO(source).readline):
    if t.type == tokenize.COMMENT:
      line, col = t.start
      notes[line] = (t.string.lstrip('#').strip(), bool(lines[line - 1][:col].strip()))

  def trailing(line: int) -> str:
    text, after_code = notes.get(line, ('', False))
    return text if after_code else ''

  def above(line: int) -> str:
    while line - 1 in notes and not notes[line - 1][1]:
      line -= 1
    return notes[line][0].split('. ')[0] if line in notes and not notes[line][1] else ''

  out = {}

  def keywords(node: ast.AST, prefix: str, line: int) -> None:
    while isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
      node = node.args[0]  # ConfigDict(dict(...))
    if not (isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'dict'):
      return
    for kw in node.keywords:
      out[prefix + kw.arg] = trailing(kw.value.lineno) if kw.value.lineno != line else ''
      keywords(kw.value, f'{prefix}{kw.arg}.', kw.value.lineno)

  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      key = key_of(node.targets[0])
      if key:
        out[key] = trailing(node.lineno) or above(node.lineno)
        keywords(node.value, f'{key}.', node.lineno)
  return out
