"""Table 1 of the paper measured from the model definition (`jax.eval_shape`, no weights)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mixer_flax import models
from mixer_flax.paper.tables import PAPER_TABLE1, PAPER_VARIANTS, TABLE1_COLUMNS


def _param_shapes(name: str, *, num_classes: int, image_size: int = 224):
  model = models.create_model(name, num_classes=num_classes)
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))['params']


@functools.cache
def _table1_row(name: str) -> tuple[tuple[str, int], ...]:
  cfg = models.get_config(name)
  params = _param_shapes(name, num_classes=1000)
  token_kernel = params['MixerBlock_0']['token_mixing']['Dense_0']['kernel']
  total = models.num_params(params)
  no_head = total - models.num_params(params['head'])
  return tuple(dict(blocks=cfg.num_blocks, patch=cfg.patch_size, C=cfg.hidden_dim,
                    S=token_kernel.shape[0], D_C=cfg.channels_mlp_dim, D_S=token_kernel.shape[1],
                    params_M=round(no_head / 1e6), params=no_head, params_1000=total).items())


def table1_row(name: str) -> dict[str, int]:
  """Measures one Table 1 column from the model definition (no weights are created).

  Returns:
    dict with the `TABLE1_COLUMNS` plus `params` (exact, without head) and
    `params_1000` (exact, with a 1000-class head), all at 224 px.
  """
  return dict(_table1_row(name))


def table1_markdown(names: Sequence[str] = PAPER_VARIANTS) -> tuple[str, bool]:
  """Table 1 as Markdown: paper / ours per cell. Returns `(markdown, all_match)`."""
  rows = {n: table1_row(n) for n in names}
  lines = ['| | ' + ' | '.join(n.replace('Mixer-', '').replace('_', '/') for n in names) + ' |',
           '|---|' + '---|' * len(names)]
  all_match = True
  labels = dict(blocks='Number of layers', patch='Patch resolution P', C='Hidden size C',
                S='Sequence length S', D_C='MLP dimension D_C', D_S='MLP dimension D_S',
                params_M='Parameters (M)')
  for col in TABLE1_COLUMNS:
    cells = []
    for n in names:
      ours, paper = rows[n][col], PAPER_TABLE1.get(n, {}).get(col)
      all_match &= paper is None or ours == paper
      mark = '' if paper is None or ours == paper else ' **MISMATCH**'
      cells.append(f'{ours}' if paper == ours else f'{paper} / {ours}{mark}')
    lines.append(f'| {labels[col]} | ' + ' | '.join(cells) + ' |')
  lines.append('| Exact params, no head | ' + ' | '.join(f'{rows[n]["params"]:,}' for n in names)
               + ' |')
  lines.append('| Exact params, 1000-class head | '
               + ' | '.join(f'{rows[n]["params_1000"]:,}' for n in names) + ' |')
  return '\n'.join(lines), all_match
