r"""Candidate cheaper host decodes of the Inception crop, timed and compared with the default.

`scripts/benchmark_input.py --jpeg_folder DIR --decode_levers`. The default
(data/preprocessing.py `train_image`): `decode_and_crop_jpeg` of the crop window at full
resolution, bilinear resize to S x S (no antialiasing), flip. Candidates, same windows:

* 'ratio': if both sides of the window are >= r x S for r in (8, 4, 2) (the largest), decode
  with libjpeg's DCT-domain downscale by r (`ratio=r`; the crop window is then in pixels of
  the scaled image, ceil(H / r) x ceil(W / r), so its edges are rounded to multiples of r),
  then the same resize; else the default;
* 'resize_uint8': the default decode, then `ResizeBilinear` (half-pixel centres, as
  `tf.image.resize`) straight on the uint8 crop, rounded and cast: no float copy of the crop,
  no clip (a bilinear mix of values in [0, 255] stays in it); the same pixels.

(`dct_method='INTEGER_FAST'` is not a candidate: TensorFlow's default decode is already
bit-identical to it.)

Timing: process CPU seconds per image of a tf.data map (read, window, decode, resize, flip,
batch) run in the caller's thread over the folder's train images, in short chunks that
alternate between the candidates (`--rounds` chunks of 96 images each), so the load of a
shared machine drifts alike for all; each chunk's time is compared with the default's.
Differences: max and mean |pixel difference| to the default (uint8 S x S, no flip), over the
folder's images and over sklearn's sample photos (china.jpg, flower.jpg: 640 x 427, so 'ratio'
is compared there at S = 112, where r = 2 applies to windows >= 224 px, as it would for photos
twice that size at S = 224); 'ratio' also reports the share of windows it applies to.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import statistics
import time

import numpy as np
import tensorflow as tf

from mixer_flax.data import preprocessing

LEVERS = ('default', 'ratio', 'resize_uint8')
AREA_MIN = 0.05  # experiments/imagenet_b16.py pp.area_min


def window(image_bytes: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
  """The pipeline's Inception crop window [y, x, h, w] for example `index`."""
  seed = tf.stack([tf.cast(index, tf.int64), tf.constant(0, tf.int64)])
  return preprocessing._crop_window(  # pylint: disable=protected-access
      tf.io.extract_jpeg_shape(image_bytes), seed=seed, area_min=AREA_MIN)


def ratio_of(w: tf.Tensor, size: int) -> tf.Tensor:
  """Largest r in (8, 4, 2) with both window sides >= r x size; else 1."""
  side = tf.minimum(w[2], w[3])
  r = tf.constant(1)
  for k in (2, 4, 8):
    r = tf.where(side >= k * size, k, r)
  return r


def crop(image_bytes: tf.Tensor, w: tf.Tensor, *, size: int, lever: str) -> tf.Tensor:
  """uint8 [size, size, 3]: window `w` decoded the `lever` way and resized."""
  if lever in ('default', 'resize_uint8'):
    image = tf.io.decode_and_crop_jpeg(image_bytes, w, channels=3)
  elif lever == 'ratio':
    shape = tf.io.extract_jpeg_shape(image_bytes)

    def scaled(r: int):
      def fn():
        y0, x0 = (w[0] + r // 2) // r, (w[1] + r // 2) // r
        y1 = tf.minimum((w[0] + w[2] + r // 2) // r, (shape[0] + r - 1) // r)
        x1 = tf.minimum((w[1] + w[3] + r // 2) // r, (shape[1] + r - 1) // r)
        return tf.io.decode_and_crop_jpeg(image_bytes, tf.stack([y0, x0, y1 - y0, x1 - x0]),
                                          channels=3, ratio=r)
      return fn

    branch = {1: 0, 2: 1, 4: 2, 8: 3}
    r = ratio_of(w, size)
    index = tf.reduce_sum(tf.cast(tf.equal(r, list(branch)), tf.int32) * list(branch.values()))
    image = tf.switch_case(index, [lambda: tf.io.decode_and_crop_jpeg(
        image_bytes, w, channels=3), scaled(2), scaled(4), scaled(8)])
  else:
    raise ValueError(f'lever {lever!r}: use one of {LEVERS}')
  image.set_shape([None, None, 3])
  if lever == 'resize_uint8':
    resized = tf.raw_ops.ResizeBilinear(images=image[None], size=[size, size],
                                        align_corners=False, half_pixel_centers=True)[0]
    return tf.cast(tf.round(resized), tf.uint8)
  return preprocessing.resize(image, (size, size))


def _batches(paths: list[str], *, lever: str, size: int, batch: int):
  """Endless batches of the train map with `lever`, computed in the caller's thread only."""
  def fn(index, path):
    image_bytes = tf.io.read_file(path)
    image = crop(image_bytes, window(image_bytes, index), size=size, lever=lever)
    return tf.image.flip_left_right(image)

  options = tf.data.Options()  # no background work: each batch is made when asked for
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  options.autotune.enabled = False
  options.experimental_optimization.inject_prefetch = False
  ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), paths))
  return iter(ds.repeat().map(fn).batch(batch).with_options(options))


def cpu_per_image(paths: list[str], *, chunks: int, size: int = 224, batch: int = 16,
                  per_chunk: int = 6) -> dict[str, list[float]]:
  """Process CPU seconds per image of each lever, in `chunks` alternating chunks.

  Chunks of `per_chunk` batches, levers in turn (order reversed every other chunk), so a
  drifting load hits all alike; chunk k of every lever covers the same images.
  """
  iterators = {lever: _batches(paths, lever=lever, size=size, batch=batch) for lever in LEVERS}
  for it in iterators.values():
    next(it)  # traces the map function
  runs: dict[str, list[float]] = {lever: [] for lever in LEVERS}
  for c in range(chunks):
    for lever in LEVERS[::1 if c % 2 == 0 else -1]:
      cpu = time.process_time()
      for _ in range(per_chunk):
        next(iterators[lever])
      runs[lever].append((time.process_time() - cpu) / (per_chunk * batch))
  return runs


def differences(blobs: list[bytes], *, size: int, windows_per_image: int = 1
                ) -> dict[str, dict[str, float]]:
  """Per lever: max / mean |difference| to the default, and the share 'ratio' applies to."""
  out: dict[str, dict[str, float]] = {}
  for lever in LEVERS[1:]:
    diffs, applied, total = [], 0, 0
    for i, b in enumerate(blobs):
      for k in range(windows_per_image):
        w = window(tf.constant(b), i * windows_per_image + k)
        if lever == 'ratio':
          total += 1
          if int(ratio_of(w, size)) == 1:
            continue  # the default's decode: identical
          applied += 1
        base = crop(tf.constant(b), w, size=size, lever='default').numpy().astype(np.int16)
        other = crop(tf.constant(b), w, size=size, lever=lever).numpy().astype(np.int16)
        diffs.append(np.abs(base - other))
    row = {'max': float(max(d.max() for d in diffs)) if diffs else 0.0,
           'mean': float(np.mean([d.mean() for d in diffs])) if diffs else 0.0}
    if lever == 'ratio':
      row['applied'] = applied / max(total, 1)
    out[lever] = row
  return out


def sample_photos() -> list[bytes]:
  """The sample photos of sklearn, china.jpg and flower.jpg, as stored (640 x 427 JPEGs)."""
  import sklearn.datasets
  directory = os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images')
  return [open(os.path.join(directory, n), 'rb').read() for n in ('china.jpg', 'flower.jpg')]


def decode_cpu_per_megapixel(blobs: list[bytes], repeats: int = 5) -> float:
  """Process CPU ms per megapixel of a full `decode_jpeg` (best of `repeats` passes)."""
  tensors = [tf.constant(b) for b in blobs]
  pixels = sum(int(tf.reduce_prod(tf.io.extract_jpeg_shape(t)[:2])) for t in tensors)
  best = float('inf')
  for _ in range(repeats):
    cpu = time.process_time()
    for t in tensors:
      tf.io.decode_jpeg(t, channels=3)
    best = min(best, time.process_time() - cpu)
  return 1e3 * best / (pixels / 1e6)


def reencoded(blobs: list[bytes], quality: int = 96) -> list[bytes]:
  """The images re-encoded as the folder's (PIL, `quality`, 4:4:4)."""
  from PIL import Image
  out = []
  for b in blobs:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(b)).convert('RGB').save(buffer, 'JPEG', quality=quality, subsampling=0)
    out.append(buffer.getvalue())
  return out


def main(args: argparse.Namespace) -> dict[str, object]:
  """Times the levers on `args.jpeg_folder` and prints times and differences."""
  from mixer_flax.perf import jpeg_folder

  root = jpeg_folder.write_jpeg_folder(args.jpeg_folder, num_images=args.num_images)
  paths = sorted(glob.glob(os.path.join(root, 'train', '*', '*.jpg')))[:args.images]
  print(f'{root}: {len(paths)} train JPEGs timed; load average {os.getloadavg()[0]:.1f}')
  runs = cpu_per_image(paths, chunks=args.rounds)
  times = {lever: statistics.median(v) for lever, v in runs.items()}
  paired = {lever: [t / d for t, d in zip(v, runs['default'])] for lever, v in runs.items()}
  for lever, v in runs.items():
    print(f'{lever:12s} {1e3 * times[lever]:.3f} ms CPU per image (mean {1e3 * np.mean(v):.3f});'
          f' chunk by chunk {statistics.median(paired[lever]):.3f} x default (median), cheaper '
          f'in {sum(r < 1 for r in paired[lever])} of {len(v)} chunks')
  blobs = [open(p, 'rb').read() for p in paths[:200]]
  photos_q96 = reencoded(sample_photos())
  per_mp = {'folder': decode_cpu_per_megapixel(blobs),
            'photos': decode_cpu_per_megapixel(sample_photos() * 20),
            'photos_q96': decode_cpu_per_megapixel(photos_q96 * 20)}
  print('full decode, CPU ms per megapixel: ' + ', '.join(f'{k} {v:.2f}' for k, v in per_mp.items())
        + ' (bytes per pixel: photos '
        + ', '.join(f'{len(b) / (640 * 427):.2f}' for b in sample_photos())
        + '; photos at q96 4:4:4 ' + ', '.join(f'{len(b) / (640 * 427):.2f}' for b in photos_q96)
        + ')')
  folder = differences(blobs, size=224)
  photos = {s: differences(sample_photos(), size=s, windows_per_image=64) for s in (224, 112)}
  for name, d in (('folder, S=224', folder), ('photos, S=224', photos[224]),
                  ('photos, S=112', photos[112])):
    print(f'|difference| to the default, {name}: ' + '; '.join(
        f'{k} max {v["max"]:.0f} mean {v["mean"]:.2f}'
        + (f' (applies to {100 * v["applied"]:.1f}% of windows)' if 'applied' in v else '')
        for k, v in d.items()))
  return {'cpu_s_per_image': times, 'runs': runs, 'paired': paired, 'folder': folder,
          'photos': photos, 'decode_ms_per_megapixel': per_mp}

