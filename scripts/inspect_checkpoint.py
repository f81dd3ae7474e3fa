"""Prints what a Mixer checkpoint is: variant, resolution, head, parameter count, dtype.

    python scripts/inspect_checkpoint.py PATH [--pretrained_image_size=224] [--keys]

PATH: a local `.npz`, `file://`, `gs://` or `https://` URL (remote files are
copied to the local cache first, see `mixer_flax.download`).
"""

import sys

from mixer_flax.checkpoint import cli

if __name__ == '__main__':
  sys.exit(cli.inspect_main())
