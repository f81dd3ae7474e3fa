"""Token-mixing MLPs fitted to another token grid: block-diagonal (integer K) or resampled.

Block-diagonal (paper, section 3 and appendix C): with the patch size fixed, an
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

Resampled, for any other token grid (down-scaling, 224 -> 384 px, non-square
inputs, or an integer K without widening the token MLP): the token axis of
each token MLP is resampled on the 2-D token grid, the hidden width D_S kept:

    Dense_0/kernel (S, D_S):  W0' = R diag(1 / colsum R) W0    (S', D_S)
    Dense_0/bias   (D_S,):    unchanged
    Dense_1/kernel (D_S, S):  W1' = W1 R^T                     (D_S, S')
    Dense_1/bias   (S,):      b1' = R b1                       (S',)

R (S' x S) = R_rows kron R_cols is bilinear interpolation from the old to the
new grid, separately along rows and columns: a triangle filter at half-pixel
sample centres, widened by 1/scale when down-sampling (antialiased) and
normalised so that every new token's weights sum to 1 -- the weights of
`jax.image.resize(..., 'linear')`, built in numpy here.

Why these scalings: a hidden unit of the first layer *sums* over tokens
(sum_s W0[s, d] x_s), so its column of W0 is a density on the grid. Dividing by
R's column sums (about S'/S) gives every old token's weight to the new tokens
that cover it, in total exactly: the response to a constant image, the mixing
sum sum_s W0[s, d], is unchanged for any grid. The second layer *writes* one
value per token, a function of position: it is interpolated (rows of R sum to 1,
so a constant output map stays constant). Resampling to the same grid is the
identity.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['adapt_token_mixing', 'interpolation_matrix', 'resample_token_mixing',
           'row_major_tile_index', 'token_grid_factor']


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



def _linear_weights(old: int, new: int) -> np.ndarray:
  """(new, old) 1-D bilinear resampling weights (antialiased when down-sampling)."""
  scale = new / old
  support = max(1.0 / scale, 1.0)  # The triangle widens when down-sampling.
  centres = (np.arange(new) + 0.5) / scale - 0.5  # New sample centres in old-pixel units.
  weights = np.maximum(0.0, 1.0 - np.abs(centres[:, None] - np.arange(old)[None, :]) / support)
  return weights / weights.sum(axis=1, keepdims=True)


def interpolation_matrix(old_grid: tuple[int, int], new_grid: tuple[int, int]) -> np.ndarray:
  """R `(S', S)`: row-major new-grid tokens as bilinear mixtures of row-major old tokens."""
  (h, w), (h_new, w_new) = old_grid, new_grid
  return np.kron(_linear_weights(h, h_new), _linear_weights(w, w_new))


def resample_token_mixing(params: dict[str, np.ndarray], *, old_grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> dict[str, np.ndarray]:
  """Resamples one block's token MLP from an `old_grid` to a `new_grid` of tokens.

  Args:
    params: flat `{'Dense_0/kernel': (S, D_S), 'Dense_0/bias': (D_S,),
      'Dense_1/kernel': (D_S, S), 'Dense_1/bias': (S,)}` with S = h * w.
    old_grid: (h, w) token grid of the checkpoint (row-major tokens).
    new_grid: (h', w') token grid of the model.

  Returns:
    The same keys shaped `(S', D_S)`, `(D_S,)`, `(D_S, S')`, `(S',)`, S' = h' w'.
  """
  w0, b0 = np.asarray(params['Dense_0/kernel']), np.asarray(params['Dense_0/bias'])
  w1, b1 = np.asarray(params['Dense_1/kernel']), np.asarray(params['Dense_1/bias'])
  tokens = old_grid[0] * old_grid[1]
  if w0.shape[0] != tokens or w1.shape[1] != tokens or b1.shape != (tokens,):
    raise ValueError(f'Token MLP shapes {w0.shape}, {w1.shape}, {b1.shape} do not fit a '
                     f'{old_grid[0]}x{old_grid[1]} token grid.')
  r = interpolation_matrix(old_grid, new_grid)
  spread = r / r.sum(axis=0, keepdims=True)  # Columns sum to 1: each old token's mass kept.
  dtype = w0.dtype
  return {
      'Dense_0/kernel': (spread @ w0.astype(np.float64)).astype(dtype),
      'Dense_0/bias': b0,
      'Dense_1/kernel': (w1.astype(np.float64) @ r.T).astype(dtype),
      'Dense_1/bias': (r @ b1.astype(np.float64)).astype(b1.dtype),
  }
