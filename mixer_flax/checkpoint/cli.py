"""Command lines of `scripts/inspect_checkpoint.py`, `scripts/export_timm.py`, `scripts/export.py`.

The exports carry the checkpoint's metadata (`checkpoint/metadata.py`: class names, image
size, value range, eval preprocessing) when it has some. The checkpoint code (JAX) is
imported after the flags are parsed; errors are one line (`entry.command`).
"""

from __future__ import annotations

import argparse
import json

from mixer_flax import entry

INSPECT_DOC = ('Prints what a Mixer checkpoint is: variant, resolution, head, parameter count, '
               'dtype.')
EXPORT_TIMM_DOC = 'Exports a Mixer checkpoint to a timm `MlpMixer` state_dict (PyTorch).'
EXPORT_DOC = ('Writes a Mixer classifier as a serialized jax.export (StableHLO) module with a '
              'symbolic batch dimension, loadable with JAX alone.')


def _parser(doc: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=doc)
  p.add_argument(entry.VERBOSE_FLAG, action='store_true', help=entry.VERBOSE_HELP)
  return p


@entry.command
def inspect_main(argv: list[str] | None = None) -> int:
  """`scripts/inspect_checkpoint.py`; returns the exit status."""
  parser = _parser(INSPECT_DOC)
  parser.add_argument('path', help='checkpoint .npz or timm .safetensors/.pth (local path or '
                                    'gs:// / https:// URL)')
  parser.add_argument('--sha256', default=None, help='expected SHA-256 of the file')
  parser.add_argument('--pretrained_image_size', type=int, default=None,
                      help='resolution of the original pre-training, to recognise a token MLP '
                           'widened for fine-tuning at a higher resolution (default: 224 px)')
  parser.add_argument('--keys', action='store_true', help='also list every parameter and shape')
  args = parser.parse_args(argv)
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import info as checkpoint_info  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import metadata  # pylint: disable=g-import-not-at-top

  params = checkpoint.load_params(args.path, sha256=args.sha256)
  tokens = None
  if args.pretrained_image_size:
    patch = checkpoint.flatten(params)['stem/kernel'].shape[0]
    tokens = (args.pretrained_image_size // patch) ** 2
  info = checkpoint_info.describe(params, source=args.path, pretrained_tokens=tokens)
  print(f'file:         {args.path}')
  print(checkpoint_info.format_description(info))
  meta = metadata.load(args.path)
  if meta:
    classes = meta['classes']
    print(f'trained on:   {meta["dataset"]}, classes {", ".join(classes[:10])}'
          f'{" ..." if len(classes) > 10 else ""} ({metadata.sidecar(args.path)})')
  if args.keys:
    for key, value in sorted(checkpoint.flatten(params).items()):
      print(f'  {key:55s} {tuple(value.shape)}')
  return 0


@entry.command
def export_timm_main(argv: list[str] | None = None) -> int:
  """`scripts/export_timm.py`; returns the exit status."""
  parser = _parser(EXPORT_TIMM_DOC)
  parser.add_argument('src', help='our checkpoint .npz (local path, gs:// or https:// URL)')
  parser.add_argument('dst', help='output file: .safetensors (needs safetensors) or .pth (torch)')
  parser.add_argument('--verify', action='store_true',
                      help='build the timm model, load the export strictly and compare logits')
  parser.add_argument('--sha256', default=None, help='expected SHA-256 of SRC')
  args = parser.parse_args(argv)
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import metadata  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import timm as export_timm  # pylint: disable=g-import-not-at-top

  params = checkpoint.load_params(args.src, sha256=args.sha256)
  state = export_timm.to_timm_state_dict(params)
  kwargs = export_timm.timm_model_kwargs(params)
  header = {'format': 'pt', 'source': args.src, 'timm_mlp_mixer_kwargs': json.dumps(kwargs)}
  meta = metadata.load(args.src)
  if meta:  # safetensors metadata holds strings only (a .pth state_dict has no place for it)
    header['mixer_flax_metadata'] = json.dumps(meta)
  export_timm.save_state_dict(args.dst, state, metadata=header)
  print(f'wrote {args.dst}: {len(state)} tensors, {export_timm.count(state):,} parameters')
  name = export_timm.timm_model_name(params)
  if name:
    print(f"timm:  timm.create_model('{name}', num_classes={kwargs['num_classes']})")
  print(f'timm:  timm.models.mlp_mixer.MlpMixer(**{kwargs})')
  if args.verify:
    print(f'verify: max |logits(timm) - logits(flax)| = {export_timm.verify(params, state):.3g} '
          '(exact vs tanh GELU)')
  return 0


@entry.command
def export_main(argv: list[str] | None = None) -> int:
  """`scripts/export.py`; returns the exit status."""
  p = _parser(EXPORT_DOC)
  p.add_argument('--checkpoint', required=True,
                 help='.npz or timm .safetensors/.pth (local path, gs:// or https://)')
  p.add_argument('--output', required=True, help='file to write (and OUTPUT.json)')
  p.add_argument('--image_size', type=int, default=None,
                 help='input side (default: the resolution the checkpoint was trained at)')
  p.add_argument('--platforms', default=None,
                 help='comma-separated lowering targets: cpu, cuda, rocm, tpu (default: '
                      'portable.DEFAULT_PLATFORMS)')
  p.add_argument('--sha256', default=None, help='expected SHA-256 of the checkpoint')
  args = p.parse_args(argv)
  from mixer_flax import checkpoint  # pylint: disable=g-import-not-at-top
  from mixer_flax.checkpoint import metadata, portable  # pylint: disable=g-import-not-at-top

  model, params, arch = checkpoint.load_model(args.checkpoint, image_size=args.image_size,
                                              sha256=args.sha256)
  size = arch['image_size']
  platforms = args.platforms.split(',') if args.platforms else list(portable.DEFAULT_PLATFORMS)
  exported = portable.export_classifier(model, params, image_size=(size, size),
                                        platforms=platforms)
  meta = metadata.load(args.checkpoint) or {}
  same_size = meta.get('image_size') == size
  portable.save_exported(args.output, exported, metadata=dict(
      checkpoint=args.checkpoint, model=arch['model_name'], image_size=size,
      num_classes=arch['num_classes'], input_range=list(metadata.VALUE_RANGE),
      **({'classes': meta['classes'], 'dataset': meta['dataset']} if meta else {}),
      **({'eval_mode': meta['eval_mode'], 'eval_resize': meta['eval_resize']}
         if same_size else {})))
  print(f'wrote {args.output}: {arch["model_name"]} at {size} px, {exported.in_avals[0]} -> '
        f'{exported.out_avals[0]}, platforms {", ".join(exported.platforms)}')
  return 0
