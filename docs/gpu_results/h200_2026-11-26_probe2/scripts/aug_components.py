"""Times each piece of the device augmentation, vmapped over a batch, on JAX's default backend.

  python aug_components.py --batch 512 --size 224 --json OUT.json [--only REGEX] [--repeats 10]

Run from a checkout of mixer_flax (PYTHONPATH=<checkout>). Imports only
mixer_flax.data.augment, augment_ops and on_device (no TensorFlow; checked at the end).
Each entry: jit, one warm-up call (compile), then `repeats` calls each timed to
block_until_ready of that call's own result; the median (and min / max) in ms.
Images are smooth random fields plus noise (realistic histograms), uint8 [B, S, S, 3].
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from mixer_flax.data import augment, augment_compact, on_device
from mixer_flax.data import augment_ops as ops

LAYERS, MAGNITUDE, MIXUP, CLASSES = 2, 15, 0.5, 1000  # the paper's ImageNet recipe


def make_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
  """Smooth random fields (16 px cells) plus noise: uint8 [batch, size, size, 3]."""
  rs = np.random.RandomState(seed)
  cells = size // 16 + 1
  coarse = rs.randint(0, 256, (batch, cells, cells, 3)).astype(np.int16)
  field = np.repeat(np.repeat(coarse, 16, 1), 16, 2)[:, :size, :size]
  noise = rs.randint(-30, 31, field.shape).astype(np.int16)
  return np.clip(field + noise, 0, 255).astype(np.uint8)


def timed(fn, args, repeats: int) -> dict:
  """Jit, one warm-up call, then `repeats` calls each blocked on its own result (ms)."""
  jitted = jax.jit(fn)
  t0 = time.perf_counter()
  jax.block_until_ready(jitted(*args))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jitted(*args)
    jax.block_until_ready(out)
    times.append(1e3 * (time.perf_counter() - t0))
  return dict(ms=statistics.median(times), ms_min=min(times), ms_max=max(times),
              compile_s=compile_s, repeats=repeats)


def pieces(size: int) -> dict:
  """Name -> (function of the batch inputs, which inputs it takes)."""
  m = augment.op_args(MAGNITUDE)
  v = jax.vmap
  out = {}
  for method in ops.HISTOGRAMS:
    out[f'histogram_{method}'] = (v(lambda x, method=method: ops.histogram(x, method)), 'x')
  for method in ops.HISTOGRAMS:  # 'compact' mode's histograms: ~1/16 of the images need one
    out[f'needed_histograms_{method}'] = (lambda x, n, method=method: (
        augment_compact.needed_histograms(x, n, method=method)), 'xn')
  out['channel_range'] = (v(ops.channel_range), 'x')
  out['autocontrast_lut'] = (v(lambda x: ops.autocontrast_lut(*ops.channel_range(x))), 'x')
  out['equalize_lut(hist)'] = (v(ops.equalize_lut), 'h')
  out['apply_lut'] = (v(ops.apply_lut), 'xl')
  out['affine'] = (v(ops.affine), 'xm')
  out['grey'] = (v(ops.grey), 'x')
  out['smooth'] = (v(ops.smooth), 'x')
  out['blend(smooth)'] = (v(lambda x: ops.blend(ops.smooth(x), x, m['factor'])), 'x')
  out['cutout'] = (v(lambda x, c: ops.cutout(x, m['pad'], c)), 'xc')
  for mode, fn in (('select', augment.select_op), ('switch', augment.apply_op)):
    for method in ops.HISTOGRAMS:
      def layer(x, k, fn=fn, method=method):
        op, sign, center = augment.draw(k, size, size)
        return fn(x, op, sign, center, magnitude=MAGNITUDE, histogram=method)
      wrap = v if mode == 'select' else (lambda f: lambda x, k: jax.lax.map(
          lambda xk: f(*xk), (x, k)))
      out[f'one_layer_{mode}_{method}'] = (wrap(layer), 'xk')
  for mode in ('select', 'compact', 'switch'):
    for method in ops.HISTOGRAMS:
      out[f'randaugment_batch_{mode}_{method}'] = (
          lambda x, k, mode=mode, method=method: augment.randaugment_batch(
              x, k, num_layers=LAYERS, magnitude=MAGNITUDE, mode=mode, histogram=method), 'xk')
  out['mixup+onehot+scale'] = (_train_inputs(layers=0), 'xy')
  for mode in ('select', 'compact'):
    for method in ops.HISTOGRAMS:
      out[f'train_inputs_{mode}_{method}'] = (_train_inputs(LAYERS, mode, method), 'xy')
  out['train_inputs_auto'] = (_train_inputs(LAYERS, 'auto', 'auto'), 'xy')
  return out


def _train_inputs(layers: int, mode: str = 'auto', method: str = 'auto'):
  spec = on_device.AugmentSpec(num_classes=CLASSES, randaug_layers=layers,
                               randaug_magnitude=MAGNITUDE, mixup_alpha=MIXUP,
                               randaug_mode=mode, randaug_histogram=method)
  return lambda x, y: on_device.train_inputs({'images': x, 'labels': y}, spec=spec,
                                             rng=jax.random.key(3), step=jnp.int32(7),
                                             first_index=0)


def main() -> None:
  """Times every piece (or those matching --only) and prints / writes the table."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--batch', type=int, default=512)
  p.add_argument('--size', type=int, default=224)
  p.add_argument('--repeats', type=int, default=10)
  p.add_argument('--only', default='', help='regex: time only the matching pieces')
  p.add_argument('--json', default='')
  args = p.parse_args()
  b, s = args.batch, args.size
  rs = np.random.RandomState(1)
  x = jax.device_put(make_images(b, s))
  inputs = {
      'x': x,
      'k': jax.random.split(jax.random.key(0), b),
      'h': jax.jit(jax.vmap(ops.histogram))(x),
      'l': jax.device_put(rs.randint(0, 256, (b, 3, 256)).astype(np.uint8)),
      'm': jax.vmap(lambda d: ops.rotate_matrix(d, s, s))(jnp.asarray(rs.uniform(-45, 45, b))),
      'c': jax.device_put(rs.randint(0, s, (b, 2)).astype(np.int32)),
      'n': jax.device_put(np.arange(b) % 16 == 1),  # 1/16 drew equalize
      'y': jax.device_put((np.arange(b) % CLASSES).astype(np.int32)),
  }
  dev = jax.devices()[0]
  print(f'backend {jax.default_backend()} ({dev.device_kind}), jax {jax.__version__}, '
        f'batch {b} x {s} px uint8, RandAugment {LAYERS} layers m={MAGNITUDE}, '
        f'mixup {MIXUP}; median of {args.repeats} calls after warm-up', flush=True)
  print(f'{"piece":40s} {"ms":>9s} {"min":>9s} {"max":>9s} {"compile s":>9s}', flush=True)
  results, start = {}, time.perf_counter()
  for name, (fn, which) in pieces(s).items():
    if args.only and not re.search(args.only, name):
      continue
    try:
      r = timed(fn, [inputs[c] for c in which], args.repeats)
    except Exception as e:  # noqa: BLE001 - e.g. out of memory: report it and go on
      results[name] = dict(error=f'{type(e).__name__}: {str(e)[:300]}')
      print(f'{name:40s} FAILED {results[name]["error"][:120]}', flush=True)
      continue
    results[name] = r
    print(f'{name:40s} {r["ms"]:9.3f} {r["ms_min"]:9.3f} {r["ms_max"]:9.3f} '
          f'{r["compile_s"]:9.1f}', flush=True)
  tf = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'tensorflow_datasets',
                                                            'ml_collections'))
  print('TensorFlow / tfds / ml_collections imported:', tf or 'none')
  print(f'total {time.perf_counter() - start:.0f} s')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(backend=jax.default_backend(), device=dev.device_kind,
                     jax=jax.__version__, batch=b, size=s, layers=LAYERS, magnitude=MAGNITUDE,
                     mixup=MIXUP, auto_histogram=augment.AUTO_HISTOGRAM,
                     resolved=augment.resolve('auto', 'auto'), imported_tf=tf,
                     results=results), f, indent=1)


if __name__ == '__main__':
  main()
