"""The sparse-modeling core: batch orthogonal matching pursuit, K-SVD, patch
dictionaries (the ``.npz`` format, the overcomplete DCT start, pictures of the
atoms), patch grids and dictionary learning from images.

Works on numpy arrays; imports only :mod:`spmcli.io` (for atomic writes) below it.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "SparseCodes": "omp",
    "batch_omp": "omp",
    "masked_batch_omp": "omp",
    "KSVD": "ksvd",
    "Dictionary": "dictionary",
    "atoms_mosaic": "dictionary",
    "dct_dictionary": "dictionary",
    "load_dictionary": "dictionary",
    "save_dictionary": "dictionary",
    "PatchAverager": "patches",
    "PatchGrid": "patches",
    "learn_dictionary": "learning",
}
__getattr__, __dir__ = lazy_attributes(
    __name__, globals(), _EXPORTS, ("omp", "ksvd", "dictionary", "patches", "learning")
)
__all__ = sorted(_EXPORTS)
