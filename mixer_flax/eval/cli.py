"""Command lines of `scripts/evaluate.py`, `scripts/fewshot.py` and `scripts/predict.py`."""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from mixer_flax import checkpoint, fileio
from mixer_flax import config as config_lib
from mixer_flax.data import pipeline
from mixer_flax.eval import classification, fewshot, inputs, labels, predict

EVALUATE_DOC = 'Top-1 / top-5 accuracy of a Mixer checkpoint on a tfds split or an image folder.'
FEWSHOT_DOC = "Linear few-shot accuracy of a checkpoint's frozen pre-logits (paper section 3)."
PREDICT_DOC = 'Top-k classes of image files under a Mixer checkpoint.'
# Default split of `scripts/evaluate.py` per dataset (else 'test').
EVALUATE_SPLITS = {'imagenet2012': 'validation', 'imagenet2012_real': 'validation',
                   'imagenet_v2': 'test'}


def _checkpoint_args(p: argparse.ArgumentParser, *, text: str) -> None:
  """`--checkpoint` and `--sha256`."""
  p.add_argument('--checkpoint', required=True, help=text)
  p.add_argument('--sha256', default=None,
                 help='expected SHA-256 of the checkpoint (remote files: checked on download)')


def _evaluate_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=EVALUATE_DOC,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  _checkpoint_args(p, text='.npz or timm .safetensors/.pth (local path, gs://, https://).')
  p.add_argument('--adapt_resolution', action='store_true',
                 help='evaluate at --image_size although the checkpoint has another resolution '
                      '(token-mixing MLPs resampled to the new token grid, zero-shot)')
  p.add_argument('--dataset', required=True,
                 help="tfds name (imagenet2012, imagenet2012_real, imagenet_v2, cifar10, ...) "
                      "or 'image_folder'.")
  p.add_argument('--split', default=None,
                 help='tfds split (default: validation for ImageNet, test otherwise).')
  p.add_argument('--data_dir', default=None, help='tfds data_dir.')
  p.add_argument('--folder_root', default=None, help="root of an 'image_folder' dataset.")
  p.add_argument('--image_size', type=int, default=None,
                 help='input side (default: the resolution the checkpoint was trained at).')
  p.add_argument('--eval_mode', default='resize_small_crop',
                 choices=('resize_small_crop', 'resize_crop', 'resize'))
  p.add_argument('--eval_resize', type=int, default=None,
                 help='intermediate side of the crop modes (default image_size * 8/7).')
  p.add_argument('--batch', type=int, default=256, help='global eval batch.')
  p.add_argument('--json', default=None, help='also write the metrics to this JSON file.')
  p.add_argument('--no_progress', action='store_true')
  return p.parse_args(argv)


def evaluate_main(argv: list[str] | None = None) -> dict[str, float]:
  """`scripts/evaluate.py`: evaluates and prints `top1`, `top5`, `loss`, `count`."""
  args = _evaluate_args(argv)
  if args.dataset == 'image_folder' and not args.folder_root:
    raise SystemExit('--dataset image_folder needs --folder_root.')
  model, params, arch = checkpoint.load_model(
      args.checkpoint, image_size=args.image_size, sha256=args.sha256,
      adapt_resolution=args.adapt_resolution)
  split = args.split or EVALUATE_SPLITS.get(args.dataset, 'test')
  pp = dict(eval_mode=args.eval_mode, **({'eval_resize': args.eval_resize} if args.eval_resize
                                          else {}))
  config = inputs.eval_config(
      dataset=args.dataset, split=split, image_size=arch['image_size'], batch=args.batch,
      data_dir=args.data_dir, folder_root=args.folder_root, pp=pp)
  classes = pipeline.get_dataset_info(config).num_classes
  config.num_classes = arch['num_classes']
  if arch['num_classes'] < classes:  # labels would not fit the head: say so, not num_classes
    raise SystemExit(f'{args.checkpoint} has a {arch["num_classes"]}-class head but '
                     f'{args.dataset} has {classes} classes: fine-tune it on this dataset first '
                     f'(python -m mixer_flax.main ... --config.pretrained_path={args.checkpoint}).')
  metrics = classification.evaluate_params(config, model, params, progress=not args.no_progress)
  metrics = dict(checkpoint=args.checkpoint, model=arch['model_name'], dataset=args.dataset,
                 split=split, image_size=arch['image_size'], eval_mode=args.eval_mode, **metrics)
  print(json.dumps(metrics, indent=2))
  if args.json:
    fileio.write_atomic(args.json, json.dumps(metrics, indent=2), what='the --json output')
  return metrics


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(t) for t in text.split(',') if t)


def _fewshot_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=FEWSHOT_DOC,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  _checkpoint_args(p, text='.npz or timm file (any head; pre-logits are used).')
  p.add_argument('--datasets', default='cifar10',
                 help='comma-separated tfds names or name:train_split:test_split entries.')
  p.add_argument('--shots', type=_ints, default=fewshot.DEFAULT_SHOTS, help='e.g. 1,5,10,25')
  p.add_argument('--seeds', type=_ints, default=(0, 1, 2), help='one shot draw per seed.')
  p.add_argument('--l2', type=float, default=fewshot.DEFAULT_L2, help='ridge strength.')
  p.add_argument('--image_size', type=int, default=None,
                 help='input side (default: the resolution the checkpoint was trained at).')
  p.add_argument('--eval_mode', default='resize_small_crop',
                 choices=('resize_small_crop', 'resize_crop', 'resize'))
  p.add_argument('--eval_resize', type=int, default=None, help='default image_size * 8/7.')
  p.add_argument('--batch', type=int, default=256)
  p.add_argument('--data_dir', default=None, help='tfds data_dir.')
  p.add_argument('--json', default=None, help='also write the results to this JSON file.')
  return p.parse_args(argv)


def fewshot_main(argv: list[str] | None = None) -> dict[str, float]:
  """`scripts/fewshot.py`: runs the probes and prints `{'fewshot/<dataset>_<k>shot': accuracy}`."""
  args = _fewshot_args(argv)
  model, params, arch = checkpoint.load_model(args.checkpoint, image_size=args.image_size,
                                                  sha256=args.sha256)
  size = arch['image_size']
  eval_resize = args.eval_resize or config_lib.eval_resize_for(size)
  options = dict(datasets=tuple(d for d in args.datasets.split(',') if d), shots=args.shots,
                 seeds=args.seeds, l2=args.l2, image_size=size, batch=args.batch,
                 data_dir=args.data_dir, pp=dict(eval_mode=args.eval_mode,
                                                 eval_resize=eval_resize))
  results = fewshot.FewShotEvaluator(config=inputs.eval_config(), model=model,
                                     options=options).run(params)
  print(json.dumps(results, indent=2))
  if args.json:
    fileio.write_atomic(args.json, json.dumps(results, indent=2), what='the --json output')
  return results


def _predict_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=PREDICT_DOC,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('images', nargs='+', help='image files (JPEG, PNG, GIF, BMP).')
  _checkpoint_args(p, text='.npz or timm .safetensors/.pth (local path, gs://, https://).')
  p.add_argument('--top_k', type=int, default=5)
  p.add_argument('--image_size', type=int, default=None,
                 help='input side (default: the resolution the checkpoint was trained at).')
  p.add_argument('--eval_mode', default='resize_small_crop',
                 choices=('resize_small_crop', 'resize_crop', 'resize'))
  p.add_argument('--eval_resize', type=int, default=None, help='default image_size * 8/7.')
  p.add_argument('--dataset', default=None,
                 help="name the classes with this dataset's labels (tfds name or image_folder).")
  p.add_argument('--data_dir', default=None)
  p.add_argument('--folder_root', default=None)
  p.add_argument('--labels_file', default=None, help='one class name per line.')
  p.add_argument('--json', default=None, help='also write the predictions to this JSON file.')
  return p.parse_args(argv)


def predict_main(argv: list[str] | None = None) -> list[dict]:
  """`scripts/predict.py`: prints and returns `[{'image': path, 'top_k': [...]}, ...]`."""
  args = _predict_args(argv)
  model, params, arch = checkpoint.load_model(args.checkpoint, image_size=args.image_size,
                                                  sha256=args.sha256)
  if not arch['num_classes']:
    raise SystemExit(f'{args.checkpoint} has no classification head.')
  names, note = labels.class_names(arch['num_classes'], labels_file=args.labels_file,
                                   dataset_names=predict.dataset_label_names(
      args.dataset, data_dir=args.data_dir, folder_root=args.folder_root))
  size = arch['image_size']
  images = predict.load_images(args.images, image_size=size, eval_mode=args.eval_mode,
                       eval_resize=args.eval_resize or config_lib.eval_resize_for(size))
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
