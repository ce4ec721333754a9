import io
import zipfile

import numpy as np
import pytest

from spmcli.errors import DictionaryFormatError
from spmcli.sparse.dictionary import (
    FORMAT_VERSION,
    Dictionary,
    atoms_mosaic,
    dct_dictionary,
    load_dictionary,
    save_dictionary,
)


@pytest.mark.parametrize(("patch_size", "n_atoms", "channels"), [(8, 256, 1), (8, 64, 1), (5, 37, 1), (6, 100, 3)])
def test_dct_dictionary_shape_and_unit_norm(patch_size, n_atoms, channels):
    atoms = dct_dictionary(patch_size, n_atoms, channels)
    assert atoms.shape == (n_atoms, patch_size * patch_size * channels)
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=1), 1.0)
    assert np.unique(np.round(atoms, 10), axis=0).shape[0] == n_atoms


def test_complete_dct_is_an_orthonormal_basis():
    atoms = dct_dictionary(8, 64)
    np.testing.assert_allclose(atoms @ atoms.T, np.eye(64), atol=1e-10)


def make_dictionary(**overrides):
    fields = {
        "atoms": dct_dictionary(4, 20),
        "patch_size": 4,
        "n_channels": 1,
        "preprocessing": "remove_mean",
        "metadata": {"seed": 3, "error_history": [0.1, 0.05]},
        "extras": {"threshold": np.array(1.5), "scores": np.arange(5.0), "method": np.array("quantile")},
    }
    fields.update(overrides)
    return Dictionary(**fields)


def test_save_load_round_trip(tmp_path):
    original = make_dictionary()
    path = tmp_path / "dict.npz"
    save_dictionary(original, path)
    loaded = load_dictionary(path)
    np.testing.assert_array_equal(loaded.atoms, original.atoms)
    assert (loaded.patch_size, loaded.n_channels, loaded.preprocessing) == (4, 1, "remove_mean")
    assert loaded.metadata == original.metadata
    assert float(loaded.extras["threshold"]) == 1.5
    assert str(loaded.extras["method"]) == "quantile"
    np.testing.assert_array_equal(loaded.extras["scores"], np.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["dict.npz"]  # no temporary left behind


def test_saving_is_byte_reproducible(tmp_path):
    save_dictionary(make_dictionary(), tmp_path / "a.npz")
    save_dictionary(make_dictionary(), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def write_npz(path, **arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def valid_arrays():
    return {
        "format_version": np.array(FORMAT_VERSION),
        "atoms": dct_dictionary(4, 20),
        "patch_size": np.array(4),
        "n_channels": np.array(1),
        "preprocessing": np.array("remove_mean"),
        "metadata": np.array("{}"),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"atoms": None}, "missing 'atoms'"),
        ({"format_version": np.array(FORMAT_VERSION + 1)}, "newer than this spmcli"),
        ({"format_version": np.array(0)}, "invalid dictionary format version"),
        ({"patch_size": np.array(5)}, "need 25"),
        ({"atoms": dct_dictionary(4, 20) * 2}, "unit norm"),
        ({"atoms": np.full((20, 16), np.nan)}, "NaN"),
        ({"atoms": np.zeros(16)}, "2-D"),
        ({"preprocessing": np.array("whiten")}, "preprocessing"),
        ({"metadata": np.array("{not json")}, "JSON"),
        ({"metadata": np.array("[1, 2]")}, "JSON object"),
        ({"patch_size": np.array("eight")}, "integer scalar"),
        ({"atoms": np.array(["a", "b"])}, "float array"),
    ],
)
def test_invalid_files_are_refused_with_the_reason(tmp_path, change, message):
    arrays = valid_arrays()
    for key, value in change.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = tmp_path / "bad.npz"
    write_npz(path, **arrays)
    with pytest.raises(DictionaryFormatError, match=message) as raised:
        load_dictionary(path)
    assert str(path) in str(raised.value)


def test_pickled_content_is_never_loaded(tmp_path):
    arrays = valid_arrays()
    arrays["metadata"] = np.array([{"evil": 1}], dtype=object)
    path = tmp_path / "pickle.npz"
    write_npz(path, **arrays)
    with pytest.raises(DictionaryFormatError, match="pickle"):
        load_dictionary(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an spmcli dictionary: empty file"),
        (b"hello world", "not an spmcli dictionary: not an .npz archive$"),
        (b"PK\x03\x04garbage", "corrupt"),
        # An image given as --dict by mistake: said so, not taken for a pickle.
        (b"II*\x00" + bytes(28), "not an spmcli dictionary: a TIFF image$"),
        (b"\x89PNG\r\n\x1a\n" + bytes(24), "not an spmcli dictionary: a PNG image$"),
    ],
)
def test_non_archives_are_refused(tmp_path, content, message):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(DictionaryFormatError, match=message):
        load_dictionary(path)


def test_single_npy_and_missing_file(tmp_path):
    path = tmp_path / "atoms.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(DictionaryFormatError, match="single array"):
        load_dictionary(path)
    with pytest.raises(DictionaryFormatError, match="no such dictionary file"):
        load_dictionary(tmp_path / "missing.npz")


def test_truncated_archive(tmp_path):
    path = tmp_path / "d.npz"
    save_dictionary(make_dictionary(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DictionaryFormatError):
        load_dictionary(path)
    assert zipfile.is_zipfile(io.BytesIO(data))


def test_atoms_mosaic_layout():
    mosaic = atoms_mosaic(dct_dictionary(8, 16), 8, zoom=1)
    assert mosaic.shape == (4 * 9 + 1, 4 * 9 + 1)
    assert mosaic.min() >= 0 and mosaic.max() <= 1
    colour = atoms_mosaic(dct_dictionary(4, 10, 3), 4, 3, zoom=2)
    assert colour.ndim == 3 and colour.shape[2] == 3
