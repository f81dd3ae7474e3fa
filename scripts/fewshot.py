r"""Linear few-shot accuracy of a checkpoint's frozen pre-logits (paper section 3).

Closed-form ridge regression to {-1, +1} targets on whitened pre-logits with a
bias feature (`mixer_flax.fewshot`), k examples per class drawn from the train
split, accuracy on the test split, mean over seeds.

Examples:
  # The paper's headline probe: 5-shot ImageNet (train[:10%] holds the shots).
  python scripts/fewshot.py --checkpoint imagenet21k/Mixer-B_16.npz --datasets imagenet2012 \
      --shots 5
  # Several datasets / shots; explicit splits as name:train_split:test_split:
  python scripts/fewshot.py --checkpoint imagenet1k/Mixer-B_16.npz \
      --datasets cifar10,oxford_iiit_pet,oxford_flowers102 --shots 1,5,10,25
  # CPU demo on the bundled digits (own checkpoint from experiments/digits.py):
  python scripts/fewshot.py --checkpoint workdirs/digits/final.npz --datasets sklearn_digits \
      --image_size 16 --eval_mode resize --shots 1,5,10,25
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mixer_flax import configs, evaluate, fewshot  # noqa: E402


def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(t) for t in text.split(',') if t)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line flags."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--checkpoint', required=True, help='.npz file (any head; pre-logits are used).')
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


def main(argv: list[str] | None = None) -> dict[str, float]:
  """Runs the probes and prints `{'fewshot/<dataset>_<k>shot': accuracy}`."""
  args = parse_args(argv)
  model, params, arch = evaluate.load_model(args.checkpoint, image_size=args.image_size)
  size = arch['image_size']
  eval_resize = args.eval_resize or configs.eval_resize_for(size)
  config = evaluate.eval_config(dataset='none', split='test', image_size=size,
                                model_name=arch['model_name'], eval_mode=args.eval_mode,
                                eval_resize=eval_resize, batch=args.batch, data_dir=args.data_dir)
  config.fewshot = fewshot.get_fewshot_config(
      datasets=tuple(d for d in args.datasets.split(',') if d), shots=args.shots,
      seeds=args.seeds, l2=args.l2, image_size=size, batch=args.batch, data_dir=args.data_dir,
      pp=dict(eval_mode=args.eval_mode, eval_resize=eval_resize))
  results = fewshot.FewShotEvaluator(config=config, model=model).run(params)
  print(json.dumps(results, indent=2))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  main()
