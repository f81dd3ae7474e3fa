"""Command lines of `scripts/evaluate.py`, `scripts/fewshot.py` and `scripts/predict.py`.

A checkpoint's metadata (`checkpoint/metadata.py`: `final.json` next to the trainer's
`final.npz`) supplies the defaults: class names, the dataset, image size and eval
preprocessing. JAX, TensorFlow and the checkpoint code are imported after the flags are
parsed, so `--help` answers at once. Errors are one line (`entry.command`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mixer_flax import config as config_lib
from mixer_flax import entry, fileio

EVALUATE_DOC = 'Top-1 / top-5 accuracy of a Mixer checkpoint on a tfds split or an image folder.'
FEWSHOT_DOC = "Linear few-shot accuracy of a checkpoint's frozen pre-logits (paper section 3)."
PREDICT_DOC = 'Top-k classes of image files under a Mixer checkpoint.'
# Default split of `scripts/evaluate.py` per dataset (else 'test').
EVALUATE_SPLITS = {'imagenet2012': 'validation', 'imagenet2012_real': 'validation',
                   'imagenet_v2': 'test'}
METADATA_NOTE = ' (default: the checkpoint\'s .json metadata, else {})'


def _parser(doc: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument(entry.VERBOSE_FLAG, action='store_true', help=entry.VERBOSE_HELP)
  return p


def _checkpoint_args(p: argparse.ArgumentParser, *, text: str) -> None:
  """`--checkpoint`, `--sha256` and the preprocessing flags."""
  p.add_argument('--checkpoint', required=True, help=text)
  p.add_argument('--sha256', default=None,
                 help='expected SHA-256 of the checkpoint (remote files: checked on download)')
  p.add_argument('--image_size', type=int, default=None,
                 help='input side (default: the resolution the checkpoint was trained at).')
  p.add_argument('--eval_mode', default=None, choices=config_lib.EVAL_MODES,
                 help='eval preprocessing' + METADATA_NOTE.format('resize_small_crop'))
  p.add_argument('--eval_resize', type=int, default=None,
                 help='intermediate side of the crop modes' + METADATA_NOTE.format(
                     'image_size * 8/7'))


def _load(args: argparse.Namespace, *, adapt_resolution: bool = False,
          eval_mode: str | None = None):
  """`(model, params, arch, meta)`; preprocessing flags filled in from the metadata.

  Flags win, then the checkpoint's metadata, then `eval_mode` (default: base_config's).
  """
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import info, metadata  # pylint: disable=g-import-not-at-top

  meta = metadata.load(args.checkpoint) or {}
  try:
    model, params, arch = checkpoint.load_model(
        args.checkpoint, image_size=args.image_size, sha256=args.sha256,
        adapt_resolution=adapt_resolution)
  except info.ResolutionMismatch as e:
    hint = (' Or add --adapt_resolution to resample token mixing to that grid (zero-shot).'
            if hasattr(args, 'adapt_resolution') else '')
    raise ValueError(f'{e}{hint}') from e
  size = arch['image_size']
  same_size = size == meta.get('image_size')
  args.eval_mode = (args.eval_mode or meta.get('eval_mode') or eval_mode
                    or config_lib.base_config().pp.eval_mode)
  args.eval_resize = args.eval_resize or (meta.get('eval_resize') if same_size else None) \
      or config_lib.eval_resize_for(size)
  return model, params, arch, meta


def _evaluate_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = _parser(EVALUATE_DOC)
  _checkpoint_args(p, text='.npz or timm .safetensors/.pth (local path, gs://, https://).')
  p.add_argument('--adapt_resolution', action='store_true',
                 help='evaluate at --image_size although the checkpoint has another resolution '
                      '(token-mixing MLPs resampled to the new token grid, zero-shot)')
  p.add_argument('--dataset', default=None,
                 help="tfds name (imagenet2012, imagenet2012_real, imagenet_v2, cifar10, ...) "
                      "or 'image_folder' (default: the dataset of the checkpoint's metadata).")
  p.add_argument('--split', default=None,
                 help='tfds split (default: validation for ImageNet, test otherwise).')
  p.add_argument('--data_dir', default=None, help='tfds data_dir.')
  p.add_argument('--folder_root', default=None, help="root of an 'image_folder' dataset.")
  p.add_argument('--batch', type=int, default=256, help='global eval batch.')
  p.add_argument('--json', default=None, help='also write the metrics to this JSON file.')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def _note(text: str) -> None:
  print(f'Note: {text}', file=sys.stderr, flush=True)


@entry.command
def evaluate_main(argv: list[str] | None = None) -> dict[str, Any]:
  """`scripts/evaluate.py`: evaluates and prints `top1`, `top5`, `loss`, `count`."""
  args = _evaluate_args(argv)
  entry.import_tensorflow()
  from mixer_flax.data import pipeline  # pylint: disable=g-import-not-at-top
  from mixer_flax.eval import classification, inputs, labels  # pylint: disable=g-import-not-at-top

  if args.dataset == 'image_folder' and not args.folder_root:
    raise ValueError('--dataset image_folder needs --folder_root (ROOT/<split>/<class>/*).')
  model, params, arch, meta = _load(args, adapt_resolution=args.adapt_resolution)
  dataset = args.dataset or meta.get('dataset')
  if not dataset:
    raise ValueError(f'{args.checkpoint} has no metadata naming its dataset: give --dataset.')
  split = args.split or EVALUATE_SPLITS.get(dataset, 'test')
  config = inputs.eval_config(
      dataset=dataset, split=split, image_size=arch['image_size'], batch=args.batch,
      data_dir=args.data_dir, folder_root=args.folder_root,
      pp=dict(eval_mode=args.eval_mode, eval_resize=args.eval_resize))
  data = pipeline.get_dataset_info(config)
  config.num_classes = arch['num_classes']
  if arch['num_classes'] < data.num_classes:  # labels would not fit the head: say so
    raise ValueError(f'{args.checkpoint} has a {arch["num_classes"]}-class head but {dataset} '
                     f'has {data.num_classes} classes: fine-tune it on this dataset first '
                     f'(python -m mixer_flax.main ... --config.pretrained_path={args.checkpoint}).')
  if meta.get('classes') and dataset == 'image_folder':  # folder classes are sorted names
    order = labels.head_order(meta['classes'], list(data.label_names), checkpoint=args.checkpoint,
                              dataset=f'--folder_root={args.folder_root}')
    if order is not None:
      params = dict(params, head={k: v[..., order] for k, v in params['head'].items()})
      _note('the folder lists the classes in another order than the checkpoint; they were '
            'matched by name.')
  metrics = classification.evaluate_params(config, model, params, progress=not args.no_progress)
  metrics = dict(checkpoint=args.checkpoint, model=arch['model_name'], dataset=dataset,
                 split=split, image_size=arch['image_size'], eval_mode=args.eval_mode, **metrics)
  print(json.dumps(metrics, indent=2))
  if args.json:
    fileio.write_atomic(args.json, json.dumps(metrics, indent=2), what='the --json output')
  return metrics


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(t) for t in text.split(',') if t)


def _fewshot_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = _parser(FEWSHOT_DOC)
  _checkpoint_args(p, text='.npz or timm file (any head; pre-logits are used).')
  p.add_argument('--datasets', default='cifar10',
                 help='comma-separated tfds names or name:train_split:test_split entries.')
  p.add_argument('--shots', type=_ints, default=None, help='e.g. 1,5,10,25 (default: those).')
  p.add_argument('--seeds', type=_ints, default=None, help='one shot draw per seed (0,1,2).')
  p.add_argument('--l2', type=float, default=None, help='ridge strength (default 2^10).')
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--data_dir', default=None, help='tfds data_dir.')
  p.add_argument('--json', default=None, help='also write the results to this JSON file.')
  return p.parse_args(argv)


@entry.command
def fewshot_main(argv: list[str] | None = None) -> dict[str, float]:
  """`scripts/fewshot.py`: runs the probes and prints `{'fewshot/<dataset>_<k>shot': accuracy}`."""
  args = _fewshot_args(argv)
  entry.import_tensorflow()
  from mixer_flax.eval import fewshot, inputs  # pylint: disable=g-import-not-at-top

  model, params, arch, _ = _load(args, eval_mode=fewshot.EVAL_MODE)
  given = dict(shots=args.shots, seeds=args.seeds, l2=args.l2)  # None: the evaluator's default
  options = dict(datasets=tuple(d for d in args.datasets.split(',') if d),
                 image_size=arch['image_size'], batch=args.batch, data_dir=args.data_dir,
                 pp=dict(eval_mode=args.eval_mode, eval_resize=args.eval_resize),
                 **{k: v for k, v in given.items() if v is not None})
  results = fewshot.FewShotEvaluator(config=inputs.eval_config(), model=model,
                                     options=options).run(params)
  print(json.dumps(results, indent=2))
  if args.json:
    fileio.write_atomic(args.json, json.dumps(results, indent=2), what='the --json output')
  return results


def _predict_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = _parser(PREDICT_DOC)
  p.add_argument('images', nargs='+', help='image files (JPEG, PNG, GIF, BMP).')
  _checkpoint_args(p, text='.npz or timm .safetensors/.pth (local path, gs://, https://).')
  p.add_argument('--top_k', type=int, default=5)
  p.add_argument('--dataset', default=None,
                 help="name the classes with this dataset's labels (tfds name or image_folder; "
                      "default: the names in the checkpoint's metadata).")
  p.add_argument('--data_dir', default=None)
  p.add_argument('--folder_root', default=None)
  p.add_argument('--labels_file', default=None, help='one class name per line.')
  p.add_argument('--json', default=None, help='also write the predictions to this JSON file.')
  return p.parse_args(argv)


@entry.command
def predict_main(argv: list[str] | None = None) -> list[dict]:
  """`scripts/predict.py`: prints and returns `[{'image': path, 'top_k': [...]}, ...]`."""
  args = _predict_args(argv)
  entry.import_tensorflow()

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from mixer_flax.eval import labels, predict  # pylint: disable=g-import-not-at-top

  model, params, arch, meta = _load(args)
  if not arch['num_classes']:
    raise ValueError(f'{args.checkpoint} has no classification head.')
  dataset_names = predict.dataset_label_names(
      args.dataset, data_dir=args.data_dir, folder_root=args.folder_root)
  if dataset_names is None and not args.labels_file and meta.get('classes'):
    dataset_names = meta['classes']
  names, note = labels.class_names(arch['num_classes'], labels_file=args.labels_file,
                                   dataset_names=dataset_names)
  images = predict.load_images(args.images, image_size=arch['image_size'],
                               eval_mode=args.eval_mode, eval_resize=args.eval_resize)
  logits = jax.jit(lambda p, x: model.apply({'params': p}, x))(params, images)
  ranked = predict.top_k(np.asarray(logits), names, args.top_k)
  results = [dict(image=path, top_k=preds) for path, preds in zip(args.images, ranked)]
  if note:
    print(f'Note: {note}')
  for r in results:
    print(r['image'])
    for rank, p in enumerate(r['top_k'], 1):
      print(f'  {rank}. {p["prob"]:.4f}  [{p["index"]}] {p["name"]}')
  if args.json:
    fileio.write_atomic(args.json, json.dumps(results, indent=2), what='the --json output')
  return results
