r"""A reproducible ImageNet-like JPEG folder for input-pipeline benchmarks.

`write_jpeg_folder(root, num_images=N)` fills an empty `root` with `train/<class>/*.jpg`
and `test/<class>/*.jpg` (the `image_folder` dataset layout). What it imitates is what costs
decoding time in ImageNet's train JPEGs (the sources: docs/performance.md, "Host pipeline"):

* sizes: 84.5% with a long side of 500 px (Flickr's 'medium' size: 500x375, 500x333, ...),
  12% smaller (long side 150-500, log-uniform), 3.5% larger (501-2500); aspect
  (short / long) 3:4 for 55%, 2:3 for 25%, else uniform 0.5-1; 85% landscape;
* content with texture at every scale (a colour 1/f pyramid of noise, coarse to fine, over
  hard-edged shapes), so the entropy decoder and the IDCT get a photo's work;
* quality 96 without chroma subsampling (4:4:4); ~0.55 bytes per pixel, ~110 KB mean.

Image i depends only on (seed, i): any number of writer processes gives the same files.
A folder that already holds files is used as it is.

  python -m mixer_flax.perf.jpeg_folder /tmp/jpegs --num_images 20000 [--processes 16]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import time

import numpy as np
from PIL import Image, ImageDraw

NUM_IMAGES = 2000
NUM_CLASSES = 10
TEST_IMAGES = 200
QUALITY = 96
FINE = 0.2  # amplitude factor per octave over the three finest octaves (sets bytes / pixel)


def image_size(rng: np.random.Generator) -> tuple[int, int]:
  """(height, width) drawn from the size model of the module doc."""
  u = rng.random()
  if u < 0.12:
    long = np.exp(rng.uniform(np.log(150), np.log(500)))
  elif u < 0.155:
    long = np.exp(rng.uniform(np.log(501), np.log(2500)))
  else:
    long = 500.0
  v = rng.random()
  aspect = 0.75 if v < 0.55 else 2 / 3 if v < 0.8 else rng.uniform(0.5, 1.0)
  long, short = int(round(long)), max(16, int(round(long * aspect)))
  return (short, long) if rng.random() < 0.85 else (long, short)


def _shapes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """4-11 opaque ellipses and polygons of random colours: hard edges at several sizes."""
  image = Image.new('RGB', (w, h), tuple(int(v) for v in rng.integers(40, 216, 3)))
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(4, 12))):
    cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.5) * min(h, w)
    fill = tuple(int(v) for v in rng.integers(20, 236, 3))
    if rng.random() < 0.5:
      draw.ellipse([cx - r, cy - r * rng.uniform(0.4, 1.0), cx + r, cy + r], fill=fill)
    else:
      angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
      draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles], fill=fill)
  return np.asarray(image, np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """Colour noise pyramid: each octave upsampled 2x (bicubic) and given new detail.

  Equal amplitude per octave (a 1/f amplitude spectrum, as natural images) except the
  three finest, which fall by FINE per octave (camera blur); luminance-dominated colour.
  """
  levels = max(1, int(np.ceil(np.log2(max(h, w) / 4))))
  sizes = [(max(2, -(-h >> (levels - k))), max(2, -(-w >> (levels - k))))
           for k in range(levels)] + [(h, w)]
  acc = None
  for k, (gh, gw) in enumerate(sizes):
    amp = 24.0 * FINE ** max(0, k - (len(sizes) - 4)) * 12.0 ** 0.5  # uniform noise: sd 1
    lum = rng.random((gh, gw, 1), np.float32) - np.float32(0.5)
    noise = np.float32(amp) * (lum + np.float32(0.45) * (rng.random((gh, gw, 3), np.float32)
                                                         - np.float32(0.5)))
    if acc is not None:
      noise += np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(acc[..., c]), 'F').resize(
          (gw, gh), Image.BICUBIC)) for c in range(3)], -1)
    acc = noise
  return acc


def photo_like(rng: np.random.Generator, h: int, w: int) -> Image.Image:
  """An RGB image of h x w px: shapes plus the texture pyramid."""
  pixels = _shapes(rng, h, w) + _texture(rng, h, w)
  return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _path(root: str, i: int, num_images: int) -> str:
  split = 'test' if i < min(TEST_IMAGES, num_images // 6) else 'train'
  return os.path.join(root, split, f'class_{i % NUM_CLASSES:02d}', f'{i:05d}.jpg')


def _write_range(root: str, start: int, stop: int, num_images: int, seed: int) -> None:
  for i in range(start, stop):
    rng = np.random.default_rng([seed, i])
    h, w = image_size(rng)
    path = _path(root, i, num_images)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    photo_like(rng, h, w).save(path, 'JPEG', quality=QUALITY, subsampling=0)


def write_jpeg_folder(root: str, *, num_images: int = NUM_IMAGES, seed: int = 0,
                      processes: int | None = None) -> str:
  """Writes the folder (module doc) unless `root` already has files; returns `root`.

  `processes` writer processes (default: all cores; 1: in this process).
  """
  if os.path.isdir(root) and os.listdir(root):
    return root
  processes = max(1, min(processes or os.cpu_count() or 1, num_images))
  if processes == 1:
    _write_range(root, 0, num_images, num_images, seed)
    return root
  bounds = np.linspace(0, num_images, 4 * processes + 1).astype(int)
  # Spawned, not forked: the caller may run JAX or tf.data threads, which fork can deadlock.
  spawn = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(processes, mp_context=spawn) as pool:
    for f in [pool.submit(_write_range, root, int(a), int(b), num_images, seed)
              for a, b in zip(bounds[:-1], bounds[1:])]:
      f.result()
  return root


def folder_stats(root: str) -> tuple[int, float]:
  """(number of .jpg files, mean size in KiB) under `root`."""
  sizes = [os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root)
           for f in files if f.endswith('.jpg')]
  return len(sizes), (sum(sizes) / len(sizes) / 1024 if sizes else 0.0)


def size_stats(root: str) -> dict[str, float]:
  """Mean width, height, pixels and bytes per pixel of the .jpg files under `root`."""
  dims, nbytes = [], 0
  for d, _, files in os.walk(root):
    for f in files:
      if f.endswith('.jpg'):
        with Image.open(os.path.join(d, f)) as image:
          dims.append(image.size)
        nbytes += os.path.getsize(os.path.join(d, f))
  w, h = np.asarray(dims, np.float64).T
  return {'mean_width': w.mean(), 'mean_height': h.mean(), 'mean_pixels': (w * h).mean(),
          'bytes_per_pixel': nbytes / (w * h).sum()}


def main(argv: list[str] | None = None) -> None:
  """Command line: writes the folder and prints its statistics and the time taken."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('root')
  parser.add_argument('--num_images', type=int, default=NUM_IMAGES)
  parser.add_argument('--processes', type=int, default=None, help='default: all cores')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  write_jpeg_folder(args.root, num_images=args.num_images, seed=args.seed,
                    processes=args.processes)
  wall = time.perf_counter() - t0
  count, kib = folder_stats(args.root)
  s = size_stats(args.root)
  print(f'{args.root}: {count} JPEGs in {wall:.1f} s ({os.cpu_count()} cores); mean '
        f'{kib:.1f} KiB, {s["mean_width"]:.0f} x {s["mean_height"]:.0f} px, '
        f'{s["mean_pixels"] / 1e3:.0f} kpx, {s["bytes_per_pixel"]:.2f} bytes / px')


if __name__ == '__main__':
  main()
