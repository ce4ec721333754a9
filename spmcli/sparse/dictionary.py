"""Patch dictionaries: the :class:`Dictionary` object, its ``.npz`` file format,
the overcomplete DCT starting dictionary and pictures of the atoms.

File format (version 1)
-----------------------
A NumPy ``.npz`` archive, read with ``allow_pickle=False``; every entry is a
plain numeric or unicode array:

``format_version``  int, 0-d. Files newer than this spmcli are refused.
``atoms``           float64, shape (n_atoms, n_features), one atom per **row**,
                    each of unit Euclidean norm. ``n_features = patch_size ** 2
                    * n_channels``; a patch vector is the ``(patch_size,
                    patch_size, n_channels)`` block flattened in C order.
``patch_size``      int, 0-d: the side of the square patch in pixels.
``n_channels``      int, 0-d: 1 for grayscale, 3 for RGB.
``preprocessing``   str, 0-d: ``"remove_mean"`` (each patch loses its
                    per-channel mean before coding; the mean is added back) or
                    ``"none"``.
``metadata``        str, 0-d: a JSON object with the training record (spmcli
                    version, seed, iterations, number of training patches,
                    method, error history...).
``extra_<name>``    optional arrays that commands attach (``detect`` stores its
                    calibration scores and threshold there).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DictionaryFormatError
from ..io.atomic import atomic_path
from ..io.images import image_format

__all__ = [
    "FORMAT_VERSION",
    "PREPROCESSING_CHOICES",
    "Dictionary",
    "dct_dictionary",
    "atoms_mosaic",
    "load_dictionary",
    "save_dictionary",
]

FORMAT_VERSION = 1
PREPROCESSING_CHOICES = ("remove_mean", "none")
_REQUIRED = ("format_version", "atoms", "patch_size", "n_channels", "preprocessing", "metadata")
_EXTRA_PREFIX = "extra_"
# No dictionary anyone learned with spmcli comes near this; refusing larger
# declared sizes keeps a hostile file from claiming gigabytes of memory.
_MAX_TOTAL_BYTES = 512 * 1024 * 1024


@dataclass
class Dictionary:
    """A learned (or analytic) patch dictionary.

    Attributes
    ----------
    atoms : ndarray, shape (n_atoms, n_features)
        One unit-norm atom per row; ``n_features = patch_size**2 * n_channels``.
    patch_size : int
        Side of the square patch, in pixels.
    n_channels : int
        Colour channels per pixel (1 grayscale, 3 RGB).
    preprocessing : str
        ``"remove_mean"`` or ``"none"``, see the module docstring.
    metadata : dict
        JSON-serialisable training record.
    extras : dict of str to ndarray
        Arrays attached by commands (for example detection calibration).
    """

    atoms: np.ndarray
    patch_size: int
    n_channels: int = 1
    preprocessing: str = "remove_mean"
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.atoms = np.asarray(self.atoms, dtype=np.float64)
        problem = _check_fields(self.atoms, self.patch_size, self.n_channels, self.preprocessing)
        if problem:
            raise ValueError(problem)

    @property
    def n_atoms(self) -> int:
        return self.atoms.shape[0]

    @property
    def n_features(self) -> int:
        return self.atoms.shape[1]

    @property
    def remove_mean(self) -> bool:
        return self.preprocessing == "remove_mean"


def _check_fields(atoms: np.ndarray, patch_size: Any, n_channels: Any, preprocessing: Any) -> str | None:
    """Return what is wrong with these fields, or None."""
    if atoms.ndim != 2 or atoms.shape[0] < 1:
        return f"'atoms' must be a non-empty 2-D array, got shape {atoms.shape}"
    if not np.all(np.isfinite(atoms)):
        return "'atoms' holds NaN or infinite values"
    if not isinstance(patch_size, (int, np.integer)) or patch_size < 1:
        return f"'patch_size' must be a positive integer, got {patch_size!r}"
    if not isinstance(n_channels, (int, np.integer)) or n_channels < 1:
        return f"'n_channels' must be a positive integer, got {n_channels!r}"
    expected = int(patch_size) ** 2 * int(n_channels)
    if atoms.shape[1] != expected:
        return (
            f"atoms have {atoms.shape[1]} features, but patch_size {patch_size} and "
            f"{n_channels} channel(s) need {expected}"
        )
    norms = np.linalg.norm(atoms, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-6):
        worst = int(np.argmax(np.abs(norms - 1.0)))
        return f"atoms must have unit norm; atom {worst} has norm {norms[worst]:.6g}"
    if preprocessing not in PREPROCESSING_CHOICES:
        return f"'preprocessing' must be one of {', '.join(PREPROCESSING_CHOICES)}, got {preprocessing!r}"
    return None


def _dct_1d(length: int, n_frequencies: int) -> np.ndarray:
    """Overcomplete 1-D DCT: columns are cosines of n_frequencies evenly spaced
    frequencies, non-constant ones with their mean removed, all unit norm."""
    # Samples at pixel centres (DCT-II), so the complete case is an orthonormal basis.
    positions = np.arange(length)[:, None] + 0.5
    basis = np.cos(positions * np.arange(n_frequencies)[None, :] * np.pi / n_frequencies)
    basis[:, 1:] -= basis[:, 1:].mean(axis=0)
    return basis / np.linalg.norm(basis, axis=0)


def _spatial_dct(patch_size: int, n_atoms: int) -> np.ndarray:
    """The n_atoms lowest-frequency separable 2-D DCT atoms, rows of length patch_size**2."""
    per_axis = max(patch_size, math.ceil(math.sqrt(n_atoms)))
    basis = _dct_1d(patch_size, per_axis)
    vertical, horizontal = np.meshgrid(np.arange(per_axis), np.arange(per_axis), indexing="ij")
    order = np.lexsort((np.maximum(vertical, horizontal).ravel(), (vertical + horizontal).ravel()))
    chosen = order[:n_atoms]
    atoms = np.einsum("xk,yl->klxy", basis, basis).reshape(per_axis * per_axis, patch_size * patch_size)
    return atoms[chosen]


def dct_dictionary(patch_size: int, n_atoms: int, n_channels: int = 1) -> np.ndarray:
    """Overcomplete 2-D discrete cosine transform dictionary.

    Separable products of 1-D cosines at ``ceil(sqrt(n))`` evenly spaced
    frequencies per axis, lowest frequencies first, as in the ``odctdict`` of
    the KSVD-Box [1]_. For colour, spatial atoms are combined with an
    orthonormal colour basis whose first vector is the luminance
    ``(1, ..., 1) / sqrt(C)``: half the atoms are luminance, the rest split
    between the chroma directions.

    Parameters
    ----------
    patch_size : int
        Side of the square patch.
    n_atoms : int
        Number of atoms; any positive number (overcomplete or not).
    n_channels : int
        Channels per pixel.

    Returns
    -------
    ndarray, shape (n_atoms, patch_size**2 * n_channels)
        Unit-norm atoms, one per row.

    References
    ----------
    .. [1] R. Rubinstein, KSVD-Box and OMP-Box, Technion, 2008-2009.

    Examples
    --------
    >>> atoms = dct_dictionary(8, 256)
    >>> atoms.shape
    (256, 64)
    >>> bool(np.allclose(np.linalg.norm(atoms, axis=1), 1.0))
    True
    """
    if patch_size < 1 or n_atoms < 1 or n_channels < 1:
        raise ValueError("patch_size, n_atoms and n_channels must be positive")
    if n_channels == 1:
        return _spatial_dct(patch_size, n_atoms)
    # Orthonormal colour basis with luminance first (QR of [ones | identity]).
    colour_basis, _ = np.linalg.qr(np.column_stack([np.ones(n_channels), np.eye(n_channels)[:, :-1]]))
    colour_basis *= np.sign(colour_basis[0, 0])
    n_luminance = math.ceil(n_atoms / 2)
    shares = [n_luminance] + [
        (n_atoms - n_luminance) // (n_channels - 1) + (1 if i < (n_atoms - n_luminance) % (n_channels - 1) else 0)
        for i in range(n_channels - 1)
    ]
    blocks = []
    for channel_vector, share in zip(colour_basis.T, shares, strict=True):
        if share == 0:
            continue
        spatial = _spatial_dct(patch_size, share)
        blocks.append((spatial[:, :, None] * channel_vector[None, None, :]).reshape(share, -1))
    atoms = np.concatenate(blocks)
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def atoms_mosaic(
    atoms: np.ndarray, patch_size: int, n_channels: int = 1, *, columns: int | None = None, zoom: int | None = None
) -> np.ndarray:
    """Arrange atoms as a grid image for looking at.

    Each atom is shown with its own contrast: zero is mid-grey, its largest
    absolute value black or white. Atoms are separated by a one-pixel white line.

    Returns
    -------
    ndarray of float in [0, 1], shape (H, W) or (H, W, n_channels)
    """
    atoms = np.asarray(atoms, dtype=np.float64)
    n_atoms = atoms.shape[0]
    columns = columns or math.ceil(math.sqrt(n_atoms))
    rows = math.ceil(n_atoms / columns)
    cell = patch_size + 1
    if zoom is None:
        zoom = max(1, 512 // (columns * cell))
    canvas = np.ones((rows * cell + 1, columns * cell + 1, n_channels))
    scale = np.abs(atoms).max(axis=1)
    scale[scale == 0] = 1.0
    tiles = 0.5 + 0.5 * (atoms / scale[:, None])
    tiles = tiles.reshape(n_atoms, patch_size, patch_size, n_channels)
    for index in range(n_atoms):
        top, left = divmod(index, columns)
        y, x = top * cell + 1, left * cell + 1
        canvas[y : y + patch_size, x : x + patch_size] = tiles[index]
    canvas = np.repeat(np.repeat(canvas, zoom, axis=0), zoom, axis=1)
    return canvas[:, :, 0] if n_channels == 1 else canvas


def save_dictionary(dictionary: Dictionary, path: str | Path) -> None:
    """Write ``dictionary`` to ``path`` as a version-1 ``.npz`` file, atomically."""
    for name, value in dictionary.extras.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufU":
            raise ValueError(f"extra {name!r} must be numeric or text, got dtype {array.dtype}")
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "atoms": np.ascontiguousarray(dictionary.atoms, dtype=np.float64),
        "patch_size": np.array(dictionary.patch_size, dtype=np.int64),
        "n_channels": np.array(dictionary.n_channels, dtype=np.int64),
        "preprocessing": np.array(dictionary.preprocessing),
        "metadata": np.array(json.dumps(dictionary.metadata, sort_keys=True)),
    }
    arrays.update({_EXTRA_PREFIX + name: np.asarray(value) for name, value in dictionary.extras.items()})
    with atomic_path(path) as temporary:
        _write_npz(temporary, arrays)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez_compressed`` but byte-for-byte reproducible: fixed member
    timestamps, so the same dictionary always gives the same file."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            archive.writestr(member, buffer.getvalue())


def _scalar_int(archive: Any, key: str, path: Path) -> int:
    value = archive[key]
    if value.shape != () or value.dtype.kind not in "iu":
        raise DictionaryFormatError(f"not an spmcli dictionary: {key!r} must be an integer scalar", path)
    return int(value)


def _scalar_str(archive: Any, key: str, path: Path) -> str:
    value = archive[key]
    if value.shape != () or value.dtype.kind != "U":
        raise DictionaryFormatError(f"not an spmcli dictionary: {key!r} must be a text scalar", path)
    return str(value)


def _check_archive_head(path: Path) -> None:
    """Refuse a file that is not a ZIP archive (what .npz is) by its first
    bytes: ``np.load`` would otherwise take it for a pickle and say so."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError as error:
        raise DictionaryFormatError(f"cannot read dictionary: {error.strerror or error}", path) from None
    if not head:
        raise DictionaryFormatError("not an spmcli dictionary: empty file (0 bytes)", path)
    if head.startswith(b"\x93NUMPY"):
        raise DictionaryFormatError("not an spmcli dictionary: a single array, not an .npz archive", path)
    if not head.startswith(b"PK"):
        kind = image_format(head)
        what = f"a {kind} image" if kind else "not an .npz archive"
        raise DictionaryFormatError(f"not an spmcli dictionary: {what}", path)


def load_dictionary(path: str | Path) -> Dictionary:
    """Read and validate a dictionary file written by :func:`save_dictionary`.

    Never unpickles. Raises :class:`~spmcli.errors.DictionaryFormatError`
    naming the file and what is missing or wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise DictionaryFormatError("no such dictionary file", path)
    _check_archive_head(path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DictionaryFormatError("not an spmcli dictionary: a single array, not an .npz archive", path)
        with loaded as archive:
            declared = sum(_declared_bytes(archive, key, path) for key in archive.files)
            if declared > _MAX_TOTAL_BYTES:
                raise DictionaryFormatError(
                    f"arrays declare {declared:,} bytes, too large for a dictionary (limit {_MAX_TOTAL_BYTES:,})", path
                )
            missing = [key for key in _REQUIRED if key not in archive.files]
            if missing:
                raise DictionaryFormatError(
                    "not an spmcli dictionary: missing " + ", ".join(repr(key) for key in missing), path
                )
            version = _scalar_int(archive, "format_version", path)
            if version > FORMAT_VERSION:
                raise DictionaryFormatError(
                    f"dictionary format version {version} is newer than this spmcli reads "
                    f"(up to {FORMAT_VERSION}); upgrade spmcli",
                    path,
                )
            if version < 1:
                raise DictionaryFormatError(f"invalid dictionary format version {version}", path)
            patch_size = _scalar_int(archive, "patch_size", path)
            n_channels = _scalar_int(archive, "n_channels", path)
            preprocessing = _scalar_str(archive, "preprocessing", path)
            metadata_text = _scalar_str(archive, "metadata", path)
            atoms = archive["atoms"]
            if atoms.dtype.kind not in "fiu":
                raise DictionaryFormatError(f"'atoms' must be a float array, got dtype {atoms.dtype}", path)
            atoms = atoms.astype(np.float64)
            extras = {}
            for key in archive.files:
                if key.startswith(_EXTRA_PREFIX):
                    extras[key[len(_EXTRA_PREFIX) :]] = archive[key]
    except DictionaryFormatError:
        raise
    except (zipfile.BadZipFile, EOFError) as error:
        raise DictionaryFormatError(f"not an spmcli dictionary: corrupt or truncated archive ({error})", path) from None
    except ValueError as error:
        # np.load raises ValueError for pickled content and for non-NumPy files.
        reason = "contains pickled objects, which are never loaded" if "pickle" in str(error) else str(error)
        raise DictionaryFormatError(f"not an spmcli dictionary: {reason}", path) from None
    except OSError as error:
        raise DictionaryFormatError(f"cannot read dictionary: {error.strerror or error}", path) from None
    except Exception as error:
        # Anything else raised while parsing untrusted bytes means a corrupt file.
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise DictionaryFormatError(f"not an spmcli dictionary: corrupt archive ({reason})", path) from None
    problem = _check_fields(atoms, patch_size, n_channels, preprocessing)
    if problem:
        raise DictionaryFormatError(f"invalid dictionary: {problem}", path)
    try:
        metadata = json.loads(metadata_text)
    except json.JSONDecodeError:
        raise DictionaryFormatError("invalid dictionary: 'metadata' is not valid JSON", path) from None
    if not isinstance(metadata, dict):
        raise DictionaryFormatError("invalid dictionary: 'metadata' must be a JSON object", path)
    return Dictionary(atoms, patch_size, n_channels, preprocessing, metadata, extras)


def _declared_bytes(archive: Any, key: str, path: Path) -> int:
    """Size an archive member's .npy header declares, read before loading any data."""
    try:
        with archive.zip.open(key + ".npy") as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"unknown .npy version {version}")
    except KeyError:
        raise DictionaryFormatError(f"not an spmcli dictionary: member {key!r} is not a .npy array", path) from None
    if dtype.hasobject:
        raise DictionaryFormatError(
            f"not an spmcli dictionary: {key!r} contains pickled objects, which are never loaded", path
        )
    return math.prod(shape) * dtype.itemsize
