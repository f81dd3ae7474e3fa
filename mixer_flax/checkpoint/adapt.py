"""Block-diagonal adaptation of token-mixing MLPs to a K times higher resolution.

Paper, section 3 / appendix C: with the patch size fixed, an
image K times larger has S' = K^2 S tokens. The token MLP grows to
D_S' = K^2 D_S hidden units and is initialised block-diagonally with K^2 copies
of the pre-trained weights, so that each of the K x K tiles (an
original-resolution sub-image) is mixed exactly as the pre-trained model mixed
a whole image.

Tokens are row-major over the (K n) x (K n) grid, so a tile's tokens are NOT
contiguous: token t' = r' * (K n) + c' belongs to tile (r' // n, c' // n) at
position (r' % n, c' % n) of that tile. We build the tile-ordered block-diagonal
matrices and permute their token rows (first layer) / columns (second layer)
into row-major order. Hidden unit `tau * D_S + d` is unit d of tile
tau = (r' // n) * K + (c' // n).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['adapt_token_mixing', 'row_major_tile_index', 'token_grid_factor']


def token_grid_factor(tokens: int, new_tokens: int) -> int | None:
  """K such that a square n x n token grid becomes (K n) x (K n), or None."""
  side, new_side = math.isqrt(tokens), math.isqrt(new_tokens)
  if side * side != tokens or new_side * new_side != new_tokens or new_side % side:
    return None
  return new_side // side


def row_major_tile_index(side: int, factor: int) -> np.ndarray:
  """Maps row-major tokens of the (K side)^2 grid to tile-ordered indices.

  Args:
    side: n, the token grid side of one tile (the checkpoint's grid).
    factor: K.

  Returns:
    int array `(K^2 n^2,)`: entry t' is `tau * n^2 + t`, where tau is the tile
    of row-major token t' and t its row-major position inside the tile.
  """
  rows, cols = np.divmod(np.arange((factor * side) ** 2), factor * side)
  tile = (rows // side) * factor + cols // side
  within = (rows % side) * side + cols % side
  return tile * side * side + within


def adapt_token_mixing(params: dict[str, np.ndarray], *, factor: int) -> dict[str, np.ndarray]:
  """Widens one block's token-mixing MLP for a `factor` times larger image.

  Args:
    params: flat `{'Dense_0/kernel': (S, D_S), 'Dense_0/bias': (D_S,),
      'Dense_1/kernel': (D_S, S), 'Dense_1/bias': (S,)}` of one token MLP;
      S must be a square number.
    factor: K >= 1.

  Returns:
    The same keys with shapes `(K^2 S, K^2 D_S)`, `(K^2 D_S,)`, `(K^2 D_S, K^2 S)`,
    `(K^2 S,)`, for row-major tokens of the K times larger image.
  """
  w0, b0 = np.asarray(params['Dense_0/kernel']), np.asarray(params['Dense_0/bias'])
  w1, b1 = np.asarray(params['Dense_1/kernel']), np.asarray(params['Dense_1/bias'])
  tokens = w0.shape[0]
  side = math.isqrt(tokens)
  if side * side != tokens or factor < 1:
    raise ValueError(f'Token MLP with {tokens} tokens (not a square grid) or factor {factor} < 1:'
                     ' cannot adapt to a higher resolution.')
  copies = factor * factor
  eye = np.eye(copies, dtype=w0.dtype)
  order = row_major_tile_index(side, factor)
  return {
      'Dense_0/kernel': np.kron(eye, w0)[order, :],
      'Dense_0/bias': np.tile(b0, copies),
      'Dense_1/kernel': np.kron(eye, w1)[:, order],
      'Dense_1/bias': np.tile(b1, copies)[order],
  }
