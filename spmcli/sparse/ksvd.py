"""K-SVD dictionary learning, exact and approximate, optionally with missing values.

Each iteration codes all training signals with batch OMP, then updates the
atoms one at a time: atom ``j`` and the coefficients of the signals that use it
become the best rank-one fit of what those signals miss without it (their
residual plus atom ``j``'s own contribution). The exact update takes the
leading singular pair [1]_; the approximate update takes one step of the power
method from the current coefficients [2]_, which is several times faster and
converges to nearly the same dictionary. With missing values, coding uses only
each signal's observed entries and the rank-one fit is a weighted alternating
least-squares step on the observed entries [3]_.

After every iteration, atoms used by too few signals and atoms nearly equal
to another (``|<d_i, d_j>|`` above a threshold) are replaced by the
worst-represented training signals, so no atom is wasted.

References
----------
.. [1] M. Aharon, M. Elad and A. Bruckstein, "K-SVD: An Algorithm for Designing
       Overcomplete Dictionaries for Sparse Representation", IEEE Trans. Signal
       Processing 54(11), 2006.
.. [2] R. Rubinstein, M. Zibulevsky and M. Elad, "Efficient Implementation of
       the K-SVD Algorithm using Batch Orthogonal Matching Pursuit", Technical
       Report CS-2008-08, Technion, 2008.
.. [3] J. Mairal, M. Elad and G. Sapiro, "Sparse Representation for Color Image
       Restoration", IEEE Trans. Image Processing 17(1), 2008.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from .omp import DEFAULT_CHUNK_SIZE, SparseCodes, batch_omp, masked_batch_omp

__all__ = ["KSVD"]

METHODS = ("exact", "approx")
IterationCallback = Callable[[int, int, float], None]


class KSVD:
    """Learn a dictionary with K-SVD.

    Parameters
    ----------
    n_atoms : int
        Number of atoms to learn.
    sparsity : int, optional
        Atoms per signal when coding (at most). At least one of ``sparsity``
        and ``tol`` is needed.
    tol : float or ndarray, optional
        Squared residual norm at which coding of a signal stops.
    n_iterations : int
        K-SVD iterations (code, then update every atom).
    method : {"exact", "approx"}
        Rank-one SVD update, or the approximate K-SVD update.
    init : {"data"} or ndarray of shape (n_atoms, n_features)
        Starting dictionary: ``"data"`` draws random training signals;
        an array (for example :func:`spmcli.sparse.dictionary.dct_dictionary`) is
        used as given after normalising its rows.
    replace_threshold : float
        Atoms whose absolute correlation with another exceeds this are replaced.
    min_atom_usage : int
        Atoms used by fewer training signals are replaced.
    random_state : int or numpy Generator, optional
        Seed for every random choice (initial atoms, replacement order ties).
    callback : callable, optional
        ``callback(iteration, n_iterations, rmse)`` after each iteration, with
        the root-mean-square residual per (observed) entry.
    coding_dtype : numpy dtype
        Precision of the sparse-coding step (``np.float32`` is about 1.5x
        faster; the atom update always runs in float64).
    coding_chunk_size : int
        Signals coded together. With an error target most signals stop after
        one or two atoms and per-chunk overhead dominates, so larger chunks
        (about 1024) pay there.

    Attributes
    ----------
    dictionary_ : ndarray, shape (n_atoms, n_features)
        Learned unit-norm atoms, one per row.
    error_history_ : list of float
        RMS residual per entry after each iteration.
    n_iter_ : int
        Iterations run.
    n_replaced_ : int
        Atoms replaced in total (unused or near-duplicate).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> true_atoms = rng.standard_normal((30, 16))
    >>> true_atoms /= np.linalg.norm(true_atoms, axis=1, keepdims=True)
    >>> codes = np.zeros((600, 30))
    >>> for row in codes:
    ...     row[rng.choice(30, 2, replace=False)] = rng.standard_normal(2)
    >>> model = KSVD(n_atoms=30, sparsity=2, n_iterations=30, random_state=0).fit(codes @ true_atoms)
    >>> model.dictionary_.shape
    (30, 16)
    >>> bool(model.error_history_[-1] < model.error_history_[0])
    True
    """

    def __init__(
        self,
        n_atoms: int = 256,
        *,
        sparsity: int | None = None,
        tol: float | np.ndarray | None = None,
        n_iterations: int = 10,
        method: str = "exact",
        init: str | np.ndarray = "data",
        replace_threshold: float = 0.99,
        min_atom_usage: int = 1,
        random_state: int | np.random.Generator | None = None,
        callback: IterationCallback | None = None,
        coding_dtype: type = np.float64,
        coding_chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.n_atoms = n_atoms
        self.sparsity = sparsity
        self.tol = tol
        self.n_iterations = n_iterations
        self.method = method
        self.init = init
        self.replace_threshold = replace_threshold
        self.min_atom_usage = min_atom_usage
        self.random_state = random_state
        self.callback = callback
        self.coding_dtype = coding_dtype
        self.coding_chunk_size = coding_chunk_size

    def _validate(self, n_signals: int, n_features: int) -> None:
        if int(self.n_atoms) != self.n_atoms or self.n_atoms < 1:
            raise ValueError(f"n_atoms must be a positive integer, got {self.n_atoms!r}")
        if self.sparsity is None and self.tol is None:
            raise ValueError("give sparsity, tol, or both")
        if self.sparsity is not None and (int(self.sparsity) != self.sparsity or self.sparsity < 1):
            raise ValueError(f"sparsity must be a positive integer, got {self.sparsity!r}")
        if int(self.n_iterations) != self.n_iterations or self.n_iterations < 0:
            raise ValueError(f"n_iterations must be a non-negative integer, got {self.n_iterations!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not 0 < self.replace_threshold <= 1:
            raise ValueError("replace_threshold must be in (0, 1]")
        if n_signals < 1:
            raise ValueError("no training signals")
        if isinstance(self.init, str):
            if self.init != "data":
                raise ValueError(f"init must be 'data' or an array, got {self.init!r}")
            if n_signals < self.n_atoms:
                raise ValueError(f"init='data' needs at least n_atoms={self.n_atoms} signals, got {n_signals}")
        else:
            shape = np.shape(self.init)
            if shape != (self.n_atoms, n_features):
                raise ValueError(f"init has shape {shape}, expected {(self.n_atoms, n_features)}")

    def _initial_atoms(self, signals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if isinstance(self.init, str):
            norms = np.linalg.norm(signals, axis=1)
            candidates = np.flatnonzero(norms > 0)
            if candidates.size < self.n_atoms:
                raise ValueError(f"init='data' needs {self.n_atoms} non-zero signals, got {candidates.size}")
            chosen = rng.choice(candidates, size=self.n_atoms, replace=False)
            atoms = signals[chosen].copy()
        else:
            atoms = np.array(self.init, dtype=np.float64)
        norms = np.linalg.norm(atoms, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError("initial dictionary has a zero atom")
        return atoms / norms

    def fit(self, signals: np.ndarray, mask: np.ndarray | None = None) -> KSVD:
        """Learn the dictionary from ``signals`` (one per row; not modified).

        Parameters
        ----------
        signals : ndarray, shape (n_signals, n_features)
        mask : ndarray of bool, same shape, optional
            True where an entry is observed; missing entries are ignored.
        """
        signals = np.array(signals, dtype=np.float64)  # a private copy
        if signals.ndim != 2:
            raise ValueError(f"signals must be 2-D, got shape {signals.shape}")
        if not np.all(np.isfinite(signals)):
            raise ValueError("signals hold NaN or infinite values")
        n_signals, n_features = signals.shape
        self._validate(n_signals, n_features)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != signals.shape:
                raise ValueError(f"mask has shape {mask.shape}, signals {signals.shape}")
            signals = np.where(mask, signals, 0.0)
        rng = np.random.default_rng(self.random_state)
        # Small per-atom products: BLAS threads only add overhead (8x slower measured).
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(signals, mask, rng)

    def _fit(self, signals: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator) -> KSVD:
        n_signals, n_features = signals.shape
        atoms = self._initial_atoms(signals, rng)
        weights = None if mask is None else mask.astype(np.float64)
        n_observed = n_signals * n_features if weights is None else max(float(weights.sum()), 1.0)

        self.error_history_: list[float] = []
        self.n_replaced_ = 0
        for iteration in range(int(self.n_iterations)):
            codes = self._code(signals, mask, atoms)
            residual = signals - codes.reconstruct(atoms)
            if weights is not None:
                residual *= weights
            usage = self._update_atoms(atoms, codes, residual, weights, rng)
            error = float(np.sqrt(np.einsum("ij,ij->", residual, residual) / n_observed))
            self.error_history_.append(error)
            self.n_replaced_ += self._replace_atoms(atoms, usage, signals, residual, weights)
            if self.callback is not None:
                self.callback(iteration + 1, int(self.n_iterations), error)
        self.dictionary_ = atoms
        self.n_iter_ = int(self.n_iterations)
        return self

    def _code(self, signals: np.ndarray, mask: np.ndarray | None, atoms: np.ndarray) -> SparseCodes:
        options = {"dtype": self.coding_dtype, "chunk_size": self.coding_chunk_size}
        if mask is None:
            return batch_omp(signals, atoms, sparsity=self.sparsity, tol=self.tol, **options)
        return masked_batch_omp(signals, mask, atoms, sparsity=self.sparsity, tol=self.tol, **options)

    def transform(self, signals: np.ndarray) -> np.ndarray:
        """Dense sparse codes of ``signals`` over the learned dictionary."""
        return batch_omp(signals, self.dictionary_, sparsity=self.sparsity, tol=self.tol).to_dense()

    def _update_atoms(
        self,
        atoms: np.ndarray,
        codes: SparseCodes,
        residual: np.ndarray,
        weights: np.ndarray | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Sequential K-SVD update of every atom, in place. Returns each atom's usage."""
        n_atoms = atoms.shape[0]
        used = codes.indices >= 0
        rows_of, slots_of = np.nonzero(used)
        atom_of = codes.indices[used]
        order = np.argsort(atom_of, kind="stable")
        boundaries = np.searchsorted(atom_of[order], np.arange(n_atoms + 1))
        usage = np.diff(boundaries)
        coefficients = codes.coefficients
        for atom in rng.permutation(n_atoms):
            members = order[boundaries[atom] : boundaries[atom + 1]]
            if members.size == 0:
                continue
            rows, slots = rows_of[members], slots_of[members]
            gains = coefficients[rows, slots]
            if weights is None:
                error = residual[rows] + np.outer(gains, atoms[atom])
                new_atom, new_gains = self._rank_one(error, atoms[atom], gains)
                residual[rows] = error - np.outer(new_gains, new_atom)
            else:
                observed = weights[rows]
                error = residual[rows] + np.outer(gains, atoms[atom]) * observed
                new_atom, new_gains = _weighted_rank_one(error, observed, atoms[atom], gains)
                residual[rows] = error - np.outer(new_gains, new_atom) * observed
            atoms[atom] = new_atom
            coefficients[rows, slots] = new_gains
        return usage

    def _rank_one(self, error: np.ndarray, atom: np.ndarray, gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "approx":
            new_atom = error.T @ gains
        elif error.shape[0] <= error.shape[1]:
            new_atom = np.linalg.svd(error, full_matrices=False)[2][0]
        else:
            import scipy.linalg  # only the exact update needs it; 0.3 s to import

            n = error.shape[1]
            new_atom = scipy.linalg.eigh(error.T @ error, subset_by_index=[n - 1, n - 1])[1][:, 0]
        norm = np.linalg.norm(new_atom)
        if norm < 1e-12:
            return atom, np.zeros_like(gains)
        new_atom /= norm
        return new_atom, error @ new_atom

    def _replace_atoms(
        self,
        atoms: np.ndarray,
        usage: np.ndarray,
        signals: np.ndarray,
        residual: np.ndarray,
        weights: np.ndarray | None,
    ) -> int:
        """Replace unused and near-duplicate atoms by the worst-coded signals."""
        correlations = np.abs(atoms @ atoms.T)
        np.fill_diagonal(correlations, 0.0)
        errors = np.einsum("ij,ij->i", residual, residual)
        candidates = iter(np.argsort(-errors, kind="stable"))
        replaced = 0
        for atom in range(atoms.shape[0]):
            if usage[atom] >= self.min_atom_usage and correlations[atom].max() <= self.replace_threshold:
                continue
            for signal in candidates:
                if errors[signal] <= 0:
                    return replaced
                vector = signals[signal] if weights is None else signals[signal] * weights[signal]
                norm = np.linalg.norm(vector)
                if norm > 1e-12:
                    break
            else:
                return replaced
            atoms[atom] = vector / norm
            row = np.abs(atoms @ atoms[atom])
            row[atom] = 0.0
            correlations[atom], correlations[:, atom] = row, row
            replaced += 1
        return replaced


def _weighted_rank_one(
    error: np.ndarray, observed: np.ndarray, atom: np.ndarray, gains: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One alternating least-squares step of the rank-one fit on observed entries,
    started from the current atom and gains (error is zero where unobserved)."""
    denominator = observed.T @ (gains * gains)
    new_atom = np.divide(error.T @ gains, denominator, out=atom.copy(), where=denominator > 1e-12)
    norm = np.linalg.norm(new_atom)
    if norm < 1e-12:
        return atom, np.zeros_like(gains)
    new_atom /= norm
    denominator = observed @ (new_atom * new_atom)
    new_gains = np.divide(error @ new_atom, denominator, out=np.zeros_like(gains), where=denominator > 1e-12)
    return new_atom, new_gains
