r"""Top-1 / top-5 accuracy of a Mixer checkpoint on a tfds split or an image folder.

Exact: every example of the split is scored once (the last batch is padded and
masked), on all local devices. The architecture is read off the checkpoint.

Examples:
  # Official ImageNet-1k B/16 on the ImageNet validation set (prepared tfds data):
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz \
      --dataset imagenet2012 --split validation --eval_mode resize_small_crop
  # Same model, ImageNet ReaL labels and ImageNet-v2:
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz --dataset imagenet2012_real
  python scripts/evaluate.py --checkpoint imagenet1k/Mixer-B_16.npz --dataset imagenet_v2 \
      --split test
  # Own checkpoint on an image folder root/{train,test}/<class>/*.png:
  python scripts/evaluate.py --checkpoint workdirs/digits/final.npz --dataset image_folder \
      --folder_root /data/folder --split test --image_size 16 --eval_mode resize
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mixer_flax import evaluate  # noqa: E402

DEFAULT_SPLITS = {'imagenet2012': 'validation', 'imagenet2012_real': 'validation',
                  'imagenet_v2': 'test'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--checkpoint', required=True, help='.npz file (local path or gs://...).')
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


def main(argv: list[str] | None = None) -> dict[str, float]:
  """Evaluates and prints `top1`, `top5`, `loss`, `count`."""
  args = parse_args(argv)
  if args.dataset == 'image_folder' and not args.folder_root:
    raise SystemExit('--dataset image_folder needs --folder_root.')
  model, params, arch = evaluate.load_model(args.checkpoint, image_size=args.image_size)
  split = args.split or DEFAULT_SPLITS.get(args.dataset, 'test')
  config = evaluate.eval_config(
      dataset=args.dataset, split=split, image_size=arch['image_size'],
      model_name=arch['model_name'], eval_mode=args.eval_mode, eval_resize=args.eval_resize,
      batch=args.batch, data_dir=args.data_dir, folder_root=args.folder_root,
      num_classes=arch['num_classes'])
  metrics = evaluate.evaluate_params(config, model, params, progress=not args.no_progress)
  metrics = dict(checkpoint=args.checkpoint, model=arch['model_name'], dataset=args.dataset,
                 split=split, image_size=arch['image_size'], eval_mode=args.eval_mode, **metrics)
  print(json.dumps(metrics, indent=2))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(metrics, f, indent=2)
  return metrics


if __name__ == '__main__':
  main()
