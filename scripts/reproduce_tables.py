r"""One command per paper table: the paper's numbers and ours side by side (Markdown).

Tables: 1, throughput, 2, 3, cifar10, permutation (see `mixer_flax/paper/reproduce.py`).

Examples:
  python scripts/reproduce_tables.py --table 1
  python scripts/reproduce_tables.py --table throughput --batch 8 --dtype float32
  python scripts/reproduce_tables.py --table throughput --variants Mixer-S_32,Mixer-B_32 --batch 2
  python scripts/reproduce_tables.py --table 3 --checkpoint_dir ckpts --data_dir ~/tfds_data
  python scripts/reproduce_tables.py --table permutation --steps 1200
"""

from mixer_flax import backends
from mixer_flax.paper import reproduce

if __name__ == '__main__':
  backends.apply_xla_flags()  # before JAX starts a backend
  reproduce.main()
