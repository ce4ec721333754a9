import warnings

import numpy as np
import pytest
from sklearn.linear_model import orthogonal_mp_gram

from spmcli.sparse.dictionary import dct_dictionary
from spmcli.sparse.omp import batch_omp, masked_batch_omp


def random_problem(seed: int, n_signals: int = 300, n_features: int = 32, n_atoms: int = 80):
    rng = np.random.default_rng(seed)
    atoms = rng.standard_normal((n_atoms, n_features))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    signals = rng.standard_normal((n_signals, n_features))
    return atoms, signals


def sklearn_codes(atoms, signals, **rule):
    gram = atoms @ atoms.T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        norms = np.einsum("ij,ij->i", signals, signals)
        return orthogonal_mp_gram(gram, (signals @ atoms.T).T, norms_squared=norms, **rule).T


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sparsity", [1, 3, 8])
def test_sparsity_rule_matches_sklearn(seed, sparsity):
    atoms, signals = random_problem(seed)
    ours = batch_omp(signals, atoms, sparsity=sparsity, chunk_size=64).to_dense()
    reference = sklearn_codes(atoms, signals, n_nonzero_coefs=sparsity)
    np.testing.assert_array_equal(ours != 0, reference != 0)
    np.testing.assert_allclose(ours, reference, atol=1e-8)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tol", [5.0, 15.0])
def test_error_rule_matches_sklearn(seed, tol):
    atoms, signals = random_problem(seed)
    signals = signals[np.einsum("ij,ij->i", signals, signals) > tol]  # sklearn always takes one atom
    codes = batch_omp(signals, atoms, tol=tol)
    reference = sklearn_codes(atoms, signals, tol=tol)
    np.testing.assert_array_equal(codes.to_dense() != 0, reference != 0)
    np.testing.assert_allclose(codes.to_dense(), reference, atol=1e-8)
    residual = signals - codes.reconstruct(atoms)
    np.testing.assert_allclose(np.einsum("ij,ij->i", residual, residual), codes.residual_sq, atol=1e-8)
    assert np.all(codes.residual_sq <= tol + 1e-9)


def test_both_rules_stop_at_whichever_comes_first():
    atoms, signals = random_problem(5)
    codes = batch_omp(signals, atoms, sparsity=3, tol=10.0)
    assert codes.n_nonzero.max() <= 3
    stopped_early = codes.n_nonzero < 3
    assert np.all(codes.residual_sq[stopped_early] <= 10.0)


def test_signal_within_target_gets_no_atoms():
    atoms = dct_dictionary(4, 32)
    signals = np.zeros((2, 16))
    signals[1, 0] = 0.1
    codes = batch_omp(signals, atoms, tol=0.05)
    assert codes.n_nonzero.tolist() == [0, 0]
    assert np.all(codes.to_dense() == 0)


def test_exact_sparse_signals_are_recovered():
    # An incoherent (random) dictionary, where OMP provably finds 3-sparse supports.
    rng = np.random.default_rng(1)
    atoms = rng.standard_normal((256, 64))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    truth = np.zeros((200, 256))
    for row in truth:
        row[rng.choice(256, 3, replace=False)] = rng.uniform(1, 2, 3) * rng.choice([-1, 1], 3)
    signals = truth @ atoms
    codes = batch_omp(signals, atoms, tol=1e-12)
    np.testing.assert_allclose(codes.to_dense(), truth, atol=1e-8)


def test_float32_is_close_to_float64():
    atoms, signals = random_problem(2)
    ours64 = batch_omp(signals, atoms, sparsity=5).to_dense()
    ours32 = batch_omp(signals, atoms, sparsity=5, dtype=np.float32).to_dense()
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, ours64, atol=1e-4)


def test_input_is_not_modified():
    atoms, signals = random_problem(3)
    before_signals, before_atoms = signals.copy(), atoms.copy()
    batch_omp(signals, atoms, sparsity=4, tol=3.0)
    np.testing.assert_array_equal(signals, before_signals)
    np.testing.assert_array_equal(atoms, before_atoms)


def test_linearly_dependent_signal_stops_without_error():
    atoms = dct_dictionary(4, 16)  # complete: any signal is exactly represented
    signals = atoms[:2] * 3.0
    codes = batch_omp(signals, atoms, sparsity=10)
    np.testing.assert_allclose(codes.reconstruct(atoms), signals, atol=1e-10)
    assert codes.n_nonzero.tolist() == [1, 1]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "sparsity"),
        ({"sparsity": 0}, "positive integer"),
        ({"sparsity": 2.5}, "positive integer"),
        ({"tol": -1.0}, "non-negative"),
        ({"tol": float("nan")}, "finite"),
    ],
)
def test_invalid_stopping_rules(arguments, message):
    atoms, signals = random_problem(0, n_signals=3)
    with pytest.raises(ValueError, match=message):
        batch_omp(signals, atoms, **arguments)


def test_shape_mismatch_is_an_error():
    atoms, signals = random_problem(0, n_signals=3)
    with pytest.raises(ValueError, match="features"):
        batch_omp(signals[:, :10], atoms, sparsity=2)


def test_masked_with_full_mask_equals_plain():
    atoms, signals = random_problem(4)
    plain = batch_omp(signals, atoms, sparsity=4).to_dense()
    masked = masked_batch_omp(signals, np.ones_like(signals, bool), atoms, sparsity=4).to_dense()
    np.testing.assert_allclose(masked, plain, atol=1e-10)


def test_masked_recovers_missing_entries_of_sparse_signals():
    rng = np.random.default_rng(7)
    atoms = dct_dictionary(8, 100)
    truth = np.zeros((150, 100))
    for row in truth:
        row[rng.choice(100, 2, replace=False)] = rng.uniform(1, 2, 2)
    signals = truth @ atoms
    masks = rng.random(signals.shape) > 0.3
    corrupted = np.where(masks, signals, 99.0)  # values at missing entries must be ignored
    codes = masked_batch_omp(corrupted, masks, atoms, tol=1e-10)
    filled = codes.reconstruct(atoms)
    assert np.sqrt(np.mean((filled - signals) ** 2)) < 1e-6
    observed_residual = np.where(masks, signals - filled, 0.0)
    np.testing.assert_allclose((observed_residual**2).sum(axis=1), codes.residual_sq, atol=1e-8)


def test_masked_ignores_atoms_that_see_nothing():
    atoms = np.eye(4)
    signals = np.array([[1.0, 2.0, 0.0, 0.0]])
    masks = np.array([[True, True, False, False]])
    codes = masked_batch_omp(signals, masks, atoms, sparsity=4)
    assert set(codes.indices[0][codes.indices[0] >= 0].tolist()) == {0, 1}
