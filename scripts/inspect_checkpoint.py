"""Prints what a Mixer checkpoint is: variant, resolution, head, parameter count, dtype.

    python scripts/inspect_checkpoint.py PATH [--pretrained_image_size=224] [--keys]

PATH: a local `.npz`, `file://`, `gs://` or `https://` URL (remote files are
copied to the local cache first, see `mixer_flax.download`).
"""

from __future__ import annotations

import argparse
import sys

from mixer_flax import checkpoint, checkpoint_info


def main(argv: list[str] | None = None) -> int:
  """Entry point; returns the exit status."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path', help='checkpoint .npz (local path or gs:// / https:// URL)')
  parser.add_argument('--pretrained_image_size', type=int, default=None,
                      help='resolution of the original pre-training, to recognise a token MLP '
                           'widened for fine-tuning at a higher resolution (default: 224 px)')
  parser.add_argument('--keys', action='store_true', help='also list every parameter and shape')
  args = parser.parse_args(argv)
  try:
    params = checkpoint.load_npz(args.path)
    tokens = None
    if args.pretrained_image_size:
      patch = checkpoint.flatten(params)['stem/kernel'].shape[0]
      tokens = (args.pretrained_image_size // patch) ** 2
    info = checkpoint_info.describe(params, source=args.path, pretrained_tokens=tokens)
  except (OSError, checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'file:         {args.path}')
  print(checkpoint_info.format_description(info))
  if args.keys:
    for key, value in sorted(checkpoint.flatten(params).items()):
      print(f'  {key:55s} {tuple(value.shape)}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
