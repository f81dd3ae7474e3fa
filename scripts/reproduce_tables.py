r"""One command per paper table: the paper's numbers and ours side by side (Markdown).

Tables:
  1           Table 1 (architectures) measured from the model definitions; must match.
  throughput  forward images/sec of every variant on this machine, ranking vs the paper's
              img/sec/core (TPUv3), FLOPs per image (XLA cost analysis and analytic).
  3, 2, cifar10  accuracy rows evaluated from checkpoints (--checkpoint_dir) on prepared
              tfds data (--data_dir); rows without them say what is missing.
  permutation paper section 3.4 on digits: original / patch+pixel / global pixel shuffle.

Each run prints the Markdown and writes `<out>/table_<name>.md` (+ `.json`); throughput and
accuracy tables also write a plot in the spirit of the paper's Fig. 3 (`<out>/fig3_<name>.png`).

Examples:
  python scripts/reproduce_tables.py --table 1
  python scripts/reproduce_tables.py --table throughput --batch 8 --dtype float32
  python scripts/reproduce_tables.py --table throughput --variants Mixer-S_32,Mixer-B_32 --batch 2
  python scripts/reproduce_tables.py --table 3 --checkpoint_dir ckpts --data_dir ~/tfds_data
  python scripts/reproduce_tables.py --table permutation --steps 1200
"""

from mixer_flax.paper import reproduce

if __name__ == '__main__':
  reproduce.main()
