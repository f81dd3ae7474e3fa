r"""The paper's weight figures of a checkpoint as PNGs (Fig. 5, the stem filters; Fig. 4).

Examples:
  python scripts/figures.py --checkpoint workdirs/digits/final.npz --out figures
  python scripts/figures.py --checkpoint imagenet21k/Mixer-B_16.npz --out figures --units 0
  python scripts/figures.py --permutation_results results/table_permutation.json --out figures

Flags and the pairing / ordering rules: `mixer_flax/paper/figures.py`, `paper/units.py`.
"""

import sys

from mixer_flax.paper import figures

if __name__ == '__main__':
  sys.exit(figures.main())
