"""Suite tables: group means, the paper's number, and `reproduce_tables --table 2` reading them."""

import json

import pytest

from mixer_flax.paper import reproduce
from mixer_flax.transfer import report, suite, vtab


def _rows(accuracy_of, paper_row='i21k_L_16_448'):
  return [dict(task=t.name, label=t.label, group=t.group, lr=0.01, accuracy=accuracy_of(t),
               train_split='train[:800]', test_split='test', suite='vtab1k', paper_row=paper_row)
          for t in vtab.TASKS.values()]


def test_group_means_and_overall_mean():
  acc = {'natural': 0.9, 'specialized': 0.8, 'structured': 0.5}
  rows = _rows(lambda t: acc[t.group])
  means = report.group_means(rows, vtab.GROUPS)
  assert means['natural'] == pytest.approx(90) and means['structured'] == pytest.approx(50)
  assert means['mean'] == pytest.approx(100 * (7 * 0.9 + 4 * 0.8 + 8 * 0.5) / 19)
  table = report.markdown(rows, suite='vtab1k', groups=vtab.GROUPS, expected=19,
                          paper_row='i21k_L_16_448')
  assert f'ours {means["mean"]:.2f}; paper (i21k_L_16_448): 74.95' in table
  assert '| **structured mean** | | | | 50.00 |' in table and 'partial' not in table


def test_table2_reads_suite_results(tmp_path):
  path = tmp_path / suite.RESULTS
  rows = _rows(lambda t: 0.75)
  path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
  markdown = reproduce.main(['--table', '2', '--out', str(tmp_path / 'out'),
                             '--transfer_results', str(path)])
  assert '| ImageNet-21k L/16 @448 |' in markdown and '74.95 | 75.00' in markdown

  path.write_text(''.join(json.dumps(r) + '\n' for r in rows[:5]))
  markdown = reproduce.main(['--table', '2', '--out', str(tmp_path / 'out'),
                             '--transfer_results', str(path)])
  assert '5 of 19 vtab1k tasks finished' in markdown


def test_select_lr_prefers_best_then_smallest():
  assert suite.select_lr({0.003: 0.5, 0.01: 0.7, 0.03: 0.7}) == 0.01
  with pytest.raises(ValueError, match='No sweep results'):
    suite.select_lr({})


def test_results_rows_are_appended_whole(tmp_path):
  suite.append_result(str(tmp_path), {'task': 'dtd', 'accuracy': 0.5})
  suite.append_result(str(tmp_path), {'task': 'svhn', 'accuracy': 0.25})
  assert suite.read_results(str(tmp_path)) == {
      'dtd': {'task': 'dtd', 'accuracy': 0.5}, 'svhn': {'task': 'svhn', 'accuracy': 0.25}}
  assert not (tmp_path / f'{suite.RESULTS}.tmp').exists()
