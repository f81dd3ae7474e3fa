"""Paper tables: Table 1 from the model equals the paper's; throughput/FLOPs; accuracy rows."""

import json

import numpy as np
import pytest

from mixer_flax.paper import reproduce, table1, tables, throughput
from mixer_flax.perf import flops

# The paper's Table 1, copied independently of mixer_flax.paper.tables (paper Table 1).
PAPER_TABLE1_MD = """\
| | S/32 | S/16 | B/32 | B/16 | L/32 | L/16 | H/14 |
|---|---|---|---|---|---|---|---|
| Number of layers | 8 | 8 | 12 | 12 | 24 | 24 | 32 |
| Patch resolution P | 32 | 16 | 32 | 16 | 32 | 16 | 14 |
| Hidden size C | 512 | 512 | 768 | 768 | 1024 | 1024 | 1280 |
| Sequence length S | 49 | 196 | 49 | 196 | 49 | 196 | 256 |
| MLP dimension D_C | 2048 | 2048 | 3072 | 3072 | 4096 | 4096 | 5120 |
| MLP dimension D_S | 256 | 256 | 384 | 384 | 512 | 512 | 640 |
| Parameters (M) | 19 | 18 | 60 | 59 | 206 | 207 | 431 |"""
EXACT_1000 = {'Mixer-S_32': 19_104_624, 'Mixer-S_16': 18_528_264, 'Mixer-B_32': 60_293_428,
              'Mixer-B_16': 59_880_472, 'Mixer-L_16': 208_196_168}


def test_table1_equals_paper(tmp_path):
  markdown = reproduce.main(['--table', '1', '--out', str(tmp_path)])
  lines = markdown.splitlines()
  assert '\n'.join(lines[:9]) == PAPER_TABLE1_MD
  assert (tmp_path / 'table_1.md').read_text().startswith(PAPER_TABLE1_MD)
  for name, count in EXACT_1000.items():
    assert table1.table1_row(name)['params_1000'] == count
  exact_row = next(line for line in lines if line.startswith('| Exact params, 1000'))
  assert '59,880,472' in exact_row and '208,196,168' in exact_row


def test_table1_mismatch_is_flagged(monkeypatch):
  monkeypatch.setitem(tables.PAPER_TABLE1, 'Mixer-S_32', {**tables.PAPER_TABLE1['Mixer-S_32'],
                                                          'params_M': 20})
  markdown, ok = table1.table1_markdown()
  assert not ok and '20 / 19 **MISMATCH**' in markdown


def test_flops_analytic_vs_xla_and_throughput(tmp_path):
  # B/16: 12 blocks x (4*768*196*384 + 4*196*768*3072) + stem + head.
  b16 = 12 * (4 * 768 * 196 * 384 + 4 * 196 * 768 * 3072) + 2 * 196 * 768 * 768 + 2 * 768 * 1000
  assert flops.analytic_flops(variant='Mixer-B_16', image_size=224,
                              num_classes=1000)['total'] == b16
  markdown = reproduce.main([
      '--table', 'throughput', '--out', str(tmp_path), '--variants', 'Mixer-S_32,Mixer-Ti_16',
      '--batch', '1', '--iters', '1'])
  data = {r['name']: r for r in json.loads(
      (tmp_path / 'table_throughput.json').read_text())}
  for r in data.values():
    assert r['img_per_sec'] > 0
    # XLA also counts LayerNorm/GELU/bias work: a little above the matmul count.
    assert 1.0 <= r['xla_flops'] / r['analytic_flops'] < 1.2
  assert '| Mixer-S_32 | 1 | float32 |' in markdown and '| 11489 | 1 |' in markdown
  ti_row = next(line for line in markdown.splitlines() if line.startswith('| Mixer-Ti_16 |'))
  assert ti_row.split(' | ')[4:7] == ['-', '-', '-']  # not in the paper: no paper speed/rank
  assert (tmp_path / 'fig3_throughput.png').stat().st_size > 10_000


def test_rank_agreement():
  paper = {'a': 3.0, 'b': 2.0, 'c': 1.0}
  assert throughput.rank_agreement({'a': 30, 'b': 20, 'c': 10}, paper) == (pytest.approx(1.0), 3)
  assert throughput.rank_agreement({'a': 1, 'b': 2, 'c': 3}, paper) == (pytest.approx(-1.0), 3)
  assert np.isnan(throughput.rank_agreement({'a': 1}, paper)[0])


def test_accuracy_rows_say_what_is_missing(tmp_path):
  (tmp_path / 'ckpt' / 'i21k_L_16').mkdir(parents=True)
  (tmp_path / 'ckpt' / 'i21k_L_16' / 'cifar10.npz').write_bytes(b'')
  markdown = reproduce.main([
      '--table', 'cifar10', '--out', str(tmp_path / 'out'),
      '--checkpoint_dir', str(tmp_path / 'ckpt'), '--data_dir', str(tmp_path / 'tfds')])
  assert '| ImageNet-21k L/16 | 98.34 | not run [4] |' in markdown
  assert "[4] ImageNet-21k L/16, CIFAR-10: tfds dataset 'cifar10' is not prepared" in markdown
  assert 'i1k_B_16/cifar10.npz missing' in markdown
  paper = {r.key: r.paper for r in tables.ACCURACY_ROWS if r.table == '3'}
  assert paper['i1k_B_16'] == {'ImNet': 76.44, 'ReaL': 82.36, 'Avg5': 88.33}
  assert paper['jft_H_14'] == {'ImNet': 86.32}
  assert (tmp_path / 'out' / 'fig3_cifar10.png').exists()


def test_sam_gsam_rows_use_the_released_files(tmp_path):
  (tmp_path / 'ckpt' / 'gsam').mkdir(parents=True)
  (tmp_path / 'ckpt' / 'gsam' / 'Mixer-B_16.npz').write_bytes(b'')
  markdown = reproduce.main([
      '--table', 'sam', '--out', str(tmp_path / 'out'),
      '--checkpoint_dir', str(tmp_path / 'ckpt'), '--data_dir', str(tmp_path / 'tfds')])
  assert '| GSAM B/16 | 77.80 | not run [19] | 84.00 | not run [20] |' in markdown
  assert "[19] GSAM B/16, ImNet: tfds dataset 'imagenet2012' is not prepared" in markdown
  assert 'sam_B_16/imagenet2012.npz missing' in markdown  # no sam/Mixer-B_16.npz given
  paper = {r.key: r.paper for r in tables.ACCURACY_ROWS if r.table == 'sam'}
  assert len(paper) == 10 and paper['sam_B_32'] == {'ImNet': 72.4, 'ReaL': 79.0}
