"""The paper-style table of a suite's results.jsonl: per task, group means, overall mean."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixer_flax.transfer import avg5, vtab

# The paper's name of a suite's overall mean (keys of `paper.tables.AccuracyRow.paper`).
SUITE_METRIC = {'vtab1k': 'VTAB', 'avg5': 'Avg5'}
SUITE_SIZE = {'vtab1k': len(vtab.TASKS), 'avg5': len(avg5.AVG5_TASKS)}


def group_means(rows: Sequence[Mapping[str, Any]], groups: Sequence[str]) -> dict[str, float]:
  """Mean top-1 (%) per group present in `rows`, plus 'mean' over all rows."""
  out = {}
  for g in groups:
    acc = [r['accuracy'] for r in rows if r['group'] == g]
    if acc:
      out[g] = 100 * float(np.mean(acc))
  if rows:
    out['mean'] = 100 * float(np.mean([r['accuracy'] for r in rows]))
  return out


def markdown(rows: Sequence[Mapping[str, Any]], *, suite: str, groups: Sequence[str],
             expected: int, paper_row: str | None = None, paper: float | None = None) -> str:
  """Markdown table: one line per task, then group means and the mean vs the paper.

  Args:
    rows: results rows (`suite.run_task`).
    suite: 'vtab1k' or 'avg5'.
    groups: group names in display order.
    expected: number of tasks of the full suite (a partial mean is marked as such).
    paper_row: the paper's row of the pre-trained model (`paper.tables.ACCURACY_ROWS` key).
    paper: the paper's suite mean for that row (None: it has none).
  """
  lines = ['| task | group | lr | train / test split | ours top-1 (%) |', '|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['label']} | {r['group']} | {r['lr']:g} | {r['train_split']} / "
                 f"{r['test_split']} | {100 * r['accuracy']:.2f} |")
  means = group_means(rows, groups)
  for g in groups:
    if g in means and len(groups) > 1:
      lines.append(f'| **{g} mean** | | | | {means[g]:.2f} |')
  partial = '' if len(rows) == expected else f' ({len(rows)} of {expected} tasks: partial)'
  if 'mean' in means:
    lines.append(f'| **{SUITE_METRIC[suite]} mean{partial}** | | | | {means["mean"]:.2f} |')
  paper_s = (f'paper ({paper_row}): {paper:.2f}' if paper is not None
             else 'paper: no number for this model' + (f' ({paper_row})' if paper_row else
                                                        ' (pass --paper_row)'))
  lines += ['', f'{SUITE_METRIC[suite]}: ours {means.get("mean", float("nan")):.2f}{partial}; '
            f'{paper_s}.']
  return '\n'.join(lines)


def suite_results(paths: Sequence[str]) -> dict[tuple[str, str], float | str]:
  """(paper row, 'VTAB' | 'Avg5') -> mean top-1 (%) from suite results.jsonl files.

  Rows are grouped by the `paper_row` and `suite` they were run with
  (`python -m mixer_flax.transfer --paper_row=...`); an incomplete suite gives a string
  naming how many tasks are done.
  """
  groups: dict[tuple[str, str], dict[str, float]] = {}
  for path in paths:
    with open(path) as f:
      for line in f:
        row = json.loads(line) if line.strip() else None
        if row and row.get('paper_row') and row.get('suite') in SUITE_METRIC:
          key = (row['paper_row'], SUITE_METRIC[row['suite']])
          groups.setdefault(key, {})[row['task']] = row['accuracy']
  out: dict[tuple[str, str], float | str] = {}
  for (paper_row, metric), acc in groups.items():
    suite = next(s for s, m in SUITE_METRIC.items() if m == metric)
    expected = SUITE_SIZE[suite]
    out[(paper_row, metric)] = (100 * float(np.mean(list(acc.values())))
                                if len(acc) == expected else
                                f'{len(acc)} of {expected} {suite} tasks finished')
  return out
