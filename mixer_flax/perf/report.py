"""Readable summary of a benchmark report (`perf/benchmark.py`)."""

from __future__ import annotations

from typing import Any

# Row order: ours, the matmul-only bound, the timm peer (fraction of the JAX peak).
MODES = ('forward', 'forward_bound', 'forward_timm', 'train', 'train_augment', 'train_sam',
         'grad_bound', 'train_timm')


def print_table(report: dict[str, Any]) -> None:
  """Readable summary of a `run` report."""
  env = report['environment']
  if 'end_to_end' in report:
    e = report['end_to_end']
    print(f"{env['backend']} ({env['device']}), jax {env['jax']}, {e['config']}: "
          f"{e['model_name']} @{e['image_size']}px, batch {e['batch']}, {e['steps']} steps")
    print(f"trainer {e['trainer_img_per_s']:.0f} img/s, bare step {e['bare_img_per_s']:.0f} "
          f"img/s (before {e['bare_before_img_per_s']:.0f}, after "
          f"{e['bare_after_img_per_s']:.0f}), ratio {e['ratio']:.3f} (medians over logging "
          "intervals)")
    return
  print(f"{env['backend']} ({env['device']}), jax {env['jax']}, {report['variant']} "
        f"@{report['image_size']}px {report['dtype']}")
  if 'matmul' in report:
    mm = report['matmul']
    print(f"matmul {mm['size']}^3 {report['dtype']} peak (median): "
          f"{mm['median_gflop_per_s']:.0f} GFLOP/s")
  if report.get('timm'):
    t = report['timm']
    print(f"timm peer: {t['error']}" if 'error' in t else
          f"timm peer: timm {t['timm']}, torch {t['torch']} ({t['device']}), compile "
          f"{t['compile']}, torch matmul peak {t['torch_peak_tflops'] * 1e3:.0f} GFLOP/s")
  hdr = (f"{'mode':14} {'batch':>5} {'img/s':>9} {'of peak':>8} {'(cpu t)':>8} {'GF/img':>7} "
         f"{'XLA GF':>7} {'compile':>8} {'mem MiB':>9}")
  print(hdr)
  for row in report.get('results', []):
    for mode in MODES:
      if mode in row:
        _print_row(mode, row, row[mode])
    for i, alt in enumerate(row.get('also', []), 1):
      for mode in ('forward', 'train'):
        if mode in alt:
          _print_row(f'{mode}+also{i}', row, alt[mode])
      gains = ', '.join(f"{m} x{alt[m]['vs_baseline']:.3f}" for m in ('forward', 'train')
                        if m in alt)
      print(f"  also{i} = {alt['overrides']}: {gains} vs the baseline above")
    if 'train_sam' in row and 'train' in row:
      t, s = row['train'], row['train_sam']
      print(f"SAM step (training/sam.py, two forward/backward passes): "
            f"{t['img_per_s'] / s['img_per_s']:.2f} x the time of the train step at batch "
            f"{row['batch']} ({2 * t['fraction_of_peak'] / s['fraction_of_peak']:.2f} x in units "
            f"of each run's matmul peak)")
    if 'train_augment' in row:
      a = row['train_augment']
      whole = (f"; whole-step rates differ by {100 * row['augment_cost']:.1f}%"
               if 'augment_cost' in row else '')
      print(f"device augmentation (RandAugment 2/15 + mixup 0.5) alone: "
            f"{a['augment_only_ms']:.1f} ms per batch of {row['batch']} = "
            f"{100 * a['augment_share']:.2f}% of the augmented train step{whole}")


def _print_row(label: str, row: dict[str, Any], r: dict[str, Any]) -> None:
  """One table line: rate, fraction of peak, FLOPs, compile time and memory of `r`."""
  mult = 6 if label == 'train_sam' else 3 if label.startswith(('train', 'grad')) else 1
  mem = r.get('memory', {})
  mib = mem.get('device_peak_mib', mem.get('host_peak_rss_mib'))
  xla, cpu_frac = r.get('xla_gflop_per_image'), r.get('cpu_time_fraction_of_peak')
  print(f"{label:14} {row['batch']:5d} {r['img_per_s']:9.2f} {r['fraction_of_peak']:8.3f} "
        f"{(f'{cpu_frac:.3f}' if cpu_frac else '-'):>8} "
        f"{mult * row['analytic_gflop_per_image']:7.1f} "
        f"{(f'{xla:.1f}' if xla else '-'):>7} {r['compile_s']:7.1f}s "
        f"{(f'{mib:.0f}' if mib else '-'):>9}")
