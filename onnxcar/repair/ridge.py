"""Ridge least squares from normal equations summed batch by batch (He et al. 2017,
"Channel Pruning for Accelerating Very Deep Neural Networks"; Luo et al. 2017, ThiNet).

Each batch's products are computed in the rows' precision (float32: BLAS at full speed) and
summed, and solved, in float64. Memory is the Gram matrices and cross-products of the systems:
O(unknowns²) per system, never dependent on the number of rows. The ridge strength is
relative, λ·tr(G)/n, chosen among ``GRID`` by the squared error on held-out rows.
"""

from dataclasses import dataclass

import numpy as np

GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT = 1e-3  # the relative ridge strength when no rows are held out
FIT, HELDOUT = 0, 1


@dataclass(frozen=True)
class Fit:
    """A solution, its relative ridge strength, and the held-out error (a fraction of the held-out
    targets' energy) of the solution and of the weights it replaces (None without held-out rows)."""

    solution: np.ndarray
    ridge: float
    error: float | None
    error_before: float | None


class NormalEquations:
    """Sums AᵀA, AᵀY and |Y|² over batches of rows, separately for fitting and held-out rows."""

    def __init__(self, systems: int, unknowns: int, outputs: int):
        self.gram = np.zeros((2, systems, unknowns, unknowns))
        self.cross = np.zeros((2, systems, unknowns, outputs))
        self.energy = np.zeros(2)
        self.rows = [0, 0]
        self.batch_bytes = 0  # the largest batch of rows and targets added

    @property
    def nbytes(self) -> int:
        """The bytes the sums and the largest batch take."""
        return self.gram.nbytes + self.cross.nbytes + self.batch_bytes

    def add(self, rows: np.ndarray, targets: np.ndarray, part: int) -> None:
        """Adds ``rows`` (systems, r, unknowns) and ``targets`` (systems, r, outputs) to ``part`` (FIT or HELDOUT)."""
        if rows.shape[0] == 1:
            self.gram[part, 0] += rows[0].T @ rows[0]  # numpy's symmetric rank-k update
        else:
            self.gram[part] += np.matmul(rows.transpose(0, 2, 1), rows)
        self.cross[part] += np.matmul(rows.transpose(0, 2, 1), targets)
        self.energy[part] += float(np.sum(np.square(targets, dtype=np.float64)))
        self.rows[part] += rows.shape[1]
        self.batch_bytes = max(self.batch_bytes, rows.nbytes + targets.nbytes)

    def solve(self, before: np.ndarray) -> Fit:
        """The ridge solution on all rows, at the strength whose fit on the fitting rows reconstructs
        the held-out rows best; ``before`` (the current weights) is scored on them too."""
        if self.rows[HELDOUT] == 0:
            return Fit(_ridge(self.gram.sum(0), self.cross.sum(0), DEFAULT), DEFAULT, None, None)
        values, vectors = _eigen(self.gram[FIT])
        projected = np.matmul(vectors.transpose(0, 2, 1), self.cross[FIT])
        scale = _scale(self.gram[FIT])
        errors = [self._heldout_error(np.matmul(vectors, projected / (values + ridge * scale)[..., None]))
                  for ridge in GRID]
        best = int(np.argmin(errors))
        solution = _ridge(self.gram.sum(0), self.cross.sum(0), GRID[best])
        return Fit(solution, GRID[best], errors[best], self._heldout_error(before))

    def _heldout_error(self, solution: np.ndarray) -> float:
        """|A W - Y|² on the held-out rows over |Y|² there."""
        gram, cross = self.gram[HELDOUT], self.cross[HELDOUT]
        error = np.sum(solution * np.matmul(gram, solution)) - 2 * np.sum(solution * cross) + self.energy[HELDOUT]
        return float(max(error, 0.0) / max(self.energy[HELDOUT], np.finfo(float).tiny))


def _scale(gram: np.ndarray) -> np.ndarray:
    """tr(G)/n per system (1 where G is zero), the unit of the ridge strength."""
    scale = np.trace(gram, axis1=1, axis2=2) / gram.shape[1]
    return np.where(scale > 0, scale, 1.0)[:, None]


def _eigen(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (clipped at 0) and eigenvectors of symmetric ``gram``."""
    values, vectors = np.linalg.eigh(gram)
    return np.maximum(values, 0.0), vectors


def _ridge(gram: np.ndarray, cross: np.ndarray, ridge: float) -> np.ndarray:
    """(G + λ·tr(G)/n·I)⁻¹ B per system; through the eigendecomposition where the direct solve fails
    or gives a non-finite value, so the result is always finite for finite G and B."""
    regularised = gram + (ridge * _scale(gram))[..., None] * np.eye(gram.shape[1])
    try:
        solution = np.linalg.solve(regularised, cross)
        if np.isfinite(solution).all():
            return solution
    except np.linalg.LinAlgError:
        pass
    values, vectors = _eigen(gram)
    shifted = values + ridge * _scale(gram)
    return np.matmul(vectors, np.matmul(vectors.transpose(0, 2, 1), cross) / shifted[..., None])
