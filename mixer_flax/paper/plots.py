"""Fig. 3-style plot: ImageNet top-1 vs throughput, the paper's points and ours."""

from __future__ import annotations

from mixer_flax.paper import figures, tables


def plot_fig3(path: str, *, ours_speed: dict[str, float] | None = None,
              ours_top1: dict[str, tuple[float, float]] | None = None) -> None:
  """Fig. 3-style plot: ImageNet top-1 vs throughput, paper points and ours.

  Args:
    path: output .png.
    ours_speed: model -> our img/s (right panel: ours vs the paper's img/s/core).
    ours_top1: row label -> (paper img/s/core of that model, our top-1 %) (left panel).
  """
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
  speed = tables.PAPER_IMG_PER_SEC_CORE
  jft = sorted(tables.PAPER_JFT_TOP1, key=speed.get)
  ax0.plot([speed[m] for m in jft], [tables.PAPER_JFT_TOP1[m] for m in jft], 'o-',
           label='paper: JFT-300M')
  for m in jft:
    ax0.annotate(m.replace('Mixer-', ''), (speed[m], tables.PAPER_JFT_TOP1[m]), fontsize=7)
  for prefix, marker, label in (('i1k_', 'v', 'paper: ImageNet'), ('i21k_', '^',
                                                                     'paper: ImageNet-21k')):
    pts = [((tables.PAPER_IMG_PER_SEC_CORE_448 if r.image_size == 448 else speed)[r.model],
            r.paper['ImNet']) for r in tables.ACCURACY_ROWS
           if r.table == '3' and r.key.startswith(prefix)]
    ax0.plot(*zip(*pts), marker, linestyle='none', label=label)
  for label, (x, acc) in (ours_top1 or {}).items():
    ax0.plot(x, acc, 's', color='C3')
    ax0.annotate(f'ours: {label}', (x, acc), fontsize=7, color='C3')
  ax0.set(xscale='log', xlabel='throughput, img/sec/core (paper, TPUv3)',
          ylabel='ImageNet top-1 (%)', title='Accuracy vs throughput (Fig. 3)')
  ax0.legend(fontsize=8)
  shared = [m for m in (ours_speed or {}) if m in speed]
  if shared:
    ax1.loglog([speed[m] for m in shared], [ours_speed[m] for m in shared], 'o')
    for m in shared:
      ax1.annotate(m.replace('Mixer-', ''), (speed[m], ours_speed[m]), fontsize=7)
  ax1.set(xlabel='paper img/sec/core (TPUv3)', ylabel='ours img/sec (this machine)',
          title='Throughput ranking: ours vs paper')
  fig.tight_layout()
  figures.save(fig, path, dpi=120)
  plt.close(fig)
