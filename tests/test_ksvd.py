import numpy as np
import pytest

from spmcli.sparse.dictionary import dct_dictionary
from spmcli.sparse.ksvd import KSVD


def planted_problem(seed: int, n_signals: int = 1500, noise: float = 0.0):
    """The synthetic experiment of Aharon, Elad and Bruckstein (2006): a random
    20x50 dictionary and signals of 3 atoms each."""
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((50, 20))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((n_signals, 50))
    for row in codes:
        row[rng.choice(50, 3, replace=False)] = rng.standard_normal(3)
    signals = codes @ atoms + noise * rng.standard_normal((n_signals, 20))
    return atoms, signals


def recovered_share(true_atoms, learned_atoms, threshold=0.99):
    return float(np.mean(np.abs(learned_atoms @ true_atoms.T).max(axis=0) > threshold))


@pytest.mark.parametrize("method", ["exact", "approx"])
def test_recovers_planted_dictionary(method):
    true_atoms, signals = planted_problem(seed=1)
    model = KSVD(50, sparsity=3, n_iterations=80, method=method, random_state=1).fit(signals)
    assert recovered_share(true_atoms, model.dictionary_) >= 0.9


def test_atoms_unit_norm_and_error_decreases():
    _, signals = planted_problem(seed=2, noise=0.05)
    model = KSVD(50, sparsity=3, n_iterations=15, random_state=0).fit(signals)
    np.testing.assert_allclose(np.linalg.norm(model.dictionary_, axis=1), 1.0, atol=1e-12)
    assert model.error_history_[-1] < 0.6 * model.error_history_[0]
    assert model.n_iter_ == 15


def test_same_seed_same_dictionary_and_input_untouched():
    _, signals = planted_problem(seed=3, n_signals=400)
    before = signals.copy()
    first = KSVD(50, sparsity=3, n_iterations=5, random_state=7).fit(signals).dictionary_
    second = KSVD(50, sparsity=3, n_iterations=5, random_state=7).fit(signals).dictionary_
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(signals, before)


def test_callback_reports_every_iteration():
    _, signals = planted_problem(seed=4, n_signals=300)
    calls = []
    KSVD(50, sparsity=3, n_iterations=4, random_state=0, callback=lambda *args: calls.append(args)).fit(signals)
    assert [call[:2] for call in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(np.isfinite(call[2]) and call[2] >= 0 for call in calls)


def test_unused_and_duplicate_atoms_are_replaced():
    _, signals = planted_problem(seed=5, n_signals=500)
    initial = dct_dictionary(4, 50)[:, :16]
    initial = np.zeros((50, 20))
    initial[:, 0] = 1.0  # fifty copies of one atom: all but one are duplicates
    initial[1:, 1] = 1e-3
    initial /= np.linalg.norm(initial, axis=1, keepdims=True)
    model = KSVD(50, sparsity=3, n_iterations=3, init=initial, random_state=0).fit(signals)
    correlations = np.abs(model.dictionary_ @ model.dictionary_.T) - np.eye(50)
    assert model.n_replaced_ >= 40
    assert correlations.max() <= 0.99 + 1e-9


def test_masked_ksvd_learns_from_observed_entries():
    true_atoms, signals = planted_problem(seed=6)
    rng = np.random.default_rng(0)
    mask = rng.random(signals.shape) > 0.2
    model = KSVD(50, sparsity=3, n_iterations=30, random_state=0).fit(np.where(mask, signals, 0.0), mask=mask)
    assert model.error_history_[-1] < 0.5 * model.error_history_[0]
    assert recovered_share(true_atoms, model.dictionary_, threshold=0.95) >= 0.6


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"n_atoms": 0, "sparsity": 2}, "n_atoms"),
        ({"n_atoms": 10}, "sparsity, tol"),
        ({"n_atoms": 10, "sparsity": 2, "method": "fast"}, "method"),
        ({"n_atoms": 10, "sparsity": 2, "init": "random"}, "init"),
        ({"n_atoms": 10, "sparsity": 2, "init": np.ones((3, 20))}, "shape"),
        ({"n_atoms": 5000, "sparsity": 2}, "at least"),
    ],
)
def test_invalid_parameters(parameters, message):
    _, signals = planted_problem(seed=0, n_signals=100)
    with pytest.raises(ValueError, match=message):
        KSVD(n_iterations=1, **parameters).fit(signals)


def test_non_finite_signals_are_refused():
    _, signals = planted_problem(seed=0, n_signals=100)
    signals[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KSVD(10, sparsity=2).fit(signals)
