r"""How fast this host's cores decode JPEGs, without TensorFlow (PIL's libjpeg-turbo).

`python -m mixer_flax.perf.decode_rate DIR [--num_images 4000] [--json out.json]` writes the
ImageNet-like folder (perf/jpeg_folder.py, timed, all cores) unless DIR holds one, then
times a full PIL decode of its train images: process CPU seconds per image in one process,
and images/s with one decoding process per core. It carries the TensorFlow host-pipeline
numbers of one machine to another that has no TensorFlow (the GPU host): CPU s per image of
the pipeline there ~ here x (PIL decode CPU s per image there / here), on the same folder,
and its rate with all cores ~ cores / (that time) x the parallel efficiency measured here.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import multiprocessing
import os
import statistics
import time

from PIL import Image

from mixer_flax.perf import jpeg_folder


def decode_cpu_per_image(paths: list[str]) -> float:
  """Process CPU seconds per image of `Image.open(path).convert('RGB')` over `paths`."""
  cpu = time.process_time()
  for path in paths:
    with Image.open(path) as image:
      image.convert('RGB').load()
  return (time.process_time() - cpu) / len(paths)


def _decode_share(paths: list[str], repeats: int) -> int:
  for _ in range(repeats):
    decode_cpu_per_image(paths)
  return repeats * len(paths)


def parallel_images_per_second(paths: list[str], processes: int, repeats: int = 2) -> float:
  """Wall-clock images/s of `processes` processes decoding `paths` each, `repeats` times."""
  spawn = multiprocessing.get_context('spawn')  # not forked: see jpeg_folder
  with concurrent.futures.ProcessPoolExecutor(processes, mp_context=spawn) as pool:
    list(pool.map(_decode_share, [paths[:8]] * processes, [1] * processes))  # start-up
    start = time.perf_counter()
    done = sum(pool.map(_decode_share, [paths] * processes, [repeats] * processes))
    return done / (time.perf_counter() - start)


def measure(root: str, *, num_images: int, images: int, rounds: int) -> dict[str, float]:
  """Writes the folder if needed (timed) and times the decodes (module doc)."""
  t0 = time.perf_counter()
  fresh = not (os.path.isdir(root) and os.listdir(root))
  jpeg_folder.write_jpeg_folder(root, num_images=num_images)
  write_s = time.perf_counter() - t0
  count, kib = jpeg_folder.folder_stats(root)
  paths = sorted(glob.glob(os.path.join(root, 'train', '*', '*.jpg')))[:images]
  decode_cpu_per_image(paths[:50])  # page cache, allocator
  runs = [decode_cpu_per_image(paths) for _ in range(rounds)]
  cores = os.cpu_count() or 1
  parallel = parallel_images_per_second(paths[:max(1, images // 4)], cores)
  cpu = statistics.median(runs)
  return {'cores': cores, 'images': count, 'mean_kib': kib,
          'write_s': write_s if fresh else float('nan'), 'written_now': fresh,
          'pil_decode_cpu_s_per_image': cpu, 'pil_decode_runs': runs,
          'pil_images_per_s_per_core': 1 / cpu, 'pil_images_per_s_all_cores': parallel,
          'parallel_efficiency': parallel * cpu / cores}


def main(argv: list[str] | None = None) -> dict[str, float]:
  """Command line (module doc)."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('root')
  p.add_argument('--num_images', type=int, default=4000, help='written when root is empty')
  p.add_argument('--images', type=int, default=1000, help='train images decoded')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--json', default='')
  args = p.parse_args(argv)
  r = measure(args.root, num_images=args.num_images, images=args.images, rounds=args.rounds)
  wrote = (f"wrote {r['images']} JPEGs in {r['write_s']:.1f} s; " if r['written_now'] else '')
  print(f"{args.root}: {wrote}mean {r['mean_kib']:.1f} KiB; {r['cores']} cores, load average "
        f"{os.getloadavg()[0]:.1f}; PIL full decode {1e3 * r['pil_decode_cpu_s_per_image']:.3f} "
        f"ms CPU per image ({r['pil_images_per_s_per_core']:,.0f} img/s per core; runs "
        f"{', '.join(f'{1e3 * t:.3f}' for t in r['pil_decode_runs'])}); all cores "
        f"{r['pil_images_per_s_all_cores']:,.0f} img/s (parallel efficiency "
        f"{r['parallel_efficiency']:.2f})")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(r, f, indent=2)
  return r


if __name__ == '__main__':
  main()
