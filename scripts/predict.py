r"""Top-k classes of image files under a Mixer checkpoint.

Class names come from what ships offline: ImageNet-1k names (1000-class heads)
from tensorflow_datasets, ImageNet-21k heads (21843 classes) as indices (tfds
ships no ImageNet-21k names), own checkpoints with the label names of the
dataset they were trained on (`--dataset`, `--data_dir`/`--folder_root`) or a
`--labels_file`. Images get the evaluation preprocessing of the input pipeline.

Examples:
  python scripts/predict.py --checkpoint imagenet1k/Mixer-B_16.npz cat.jpg dog.png
  python scripts/predict.py --checkpoint imagenet21k/Mixer-B_16.npz --top_k 3 cat.jpg
  python scripts/predict.py --checkpoint workdirs/digits/final.npz --dataset sklearn_digits \
      --image_size 16 --eval_mode resize digit.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mixer_flax import configs, evaluate, labels  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('images', nargs='+', help='image files (JPEG, PNG, GIF, BMP).')
  p.add_argument('--checkpoint', required=True, help='.npz file (local path or gs://...).')
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


def load_images(paths: list[str], *, image_size: int, eval_mode: str,
                eval_resize: int) -> np.ndarray:
  """Decodes and preprocesses image files like the eval pipeline.

  Returns:
    float32 `(N, image_size, image_size, 3)` in [-1, 1].
  """
  import tensorflow as tf

  from mixer_flax import preprocessing

  out = []
  for path in paths:
    if not os.path.exists(path):
      raise FileNotFoundError(f'Image file {path!r} does not exist.')
    image = preprocessing.eval_image(tf.io.read_file(path), image_size=image_size,
                                     mode=eval_mode, eval_resize=eval_resize)
    out.append(preprocessing.scale_to_unit(image).numpy())
  return np.stack(out)


def top_k(logits: np.ndarray, names: list[str], k: int) -> list[list[dict]]:
  """Per image the k most probable classes: dicts(index, name, prob), most probable first."""
  probs = np.asarray(jax.nn.softmax(np.asarray(logits, np.float64), axis=-1))
  order = np.argsort(-probs, axis=-1, kind='stable')[:, :k]
  return [[dict(index=int(i), name=names[i], prob=float(p[i])) for i in row]
          for row, p in zip(order, probs)]


def dataset_label_names(args: argparse.Namespace) -> list[str] | None:
  """Label names of `--dataset` via the input pipeline's dataset info (None without it)."""
  if not args.dataset:
    return None
  import ml_collections

  from mixer_flax import input_pipeline

  config = ml_collections.ConfigDict(dict(
      dataset=args.dataset, data_dir=args.data_dir, folder_root=args.folder_root,
      manual_dir=None, train_split='train', eval_split='test', num_classes=None,
      image_key='image', label_key='label'))
  return list(input_pipeline.get_dataset_info(config).label_names)


def main(argv: list[str] | None = None) -> list[dict]:
  """Prints and returns `[{'image': path, 'top_k': [...]}, ...]`."""
  args = parse_args(argv)
  model, params, arch = evaluate.load_model(args.checkpoint, image_size=args.image_size)
  if not arch['num_classes']:
    raise SystemExit(f'{args.checkpoint} has no classification head.')
  names, note = labels.class_names(arch['num_classes'], labels_file=args.labels_file,
                                   dataset_names=dataset_label_names(args))
  size = arch['image_size']
  images = load_images(args.images, image_size=size, eval_mode=args.eval_mode,
                       eval_resize=args.eval_resize or configs.eval_resize_for(size))
  logits = jax.jit(lambda p, x: model.apply({'params': p}, x))(params, images)
  results = [dict(image=path, top_k=preds)
             for path, preds in zip(args.images, top_k(np.asarray(logits), names, args.top_k))]
  if note:
    print(f'Note: {note}')
  for r in results:
    print(r['image'])
    for rank, p in enumerate(r['top_k'], 1):
      print(f'  {rank}. {p["prob"]:.4f}  [{p["index"]}] {p["name"]}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  main()
