"""spmcli: sparse modeling for folders of images.

The numeric core is importable as a library; the command line calls the same
functions::

    >>> import numpy as np
    >>> import spmcli
    >>> atoms = spmcli.dct_dictionary(8, 256)
    >>> codes = spmcli.batch_omp(np.zeros((3, 64)), atoms, sparsity=4)
    >>> codes.n_nonzero.tolist()
    [0, 0, 0]
"""

from importlib import import_module

from ._version import __version__

# Public names and the module each lives in. Loaded on first use (PEP 562), so
# the command line starts fast and pays only for what a command needs.
_EXPORTS = {
    "Dictionary": "dictionary",
    "atoms_mosaic": "dictionary",
    "dct_dictionary": "dictionary",
    "load_dictionary": "dictionary",
    "save_dictionary": "dictionary",
    "DictionaryFormatError": "errors",
    "ImageReadError": "errors",
    "ImageWriteError": "errors",
    "SpmcliError": "errors",
    "Image": "images",
    "find_images": "images",
    "read_image": "images",
    "write_image": "images",
    "KSVD": "ksvd",
    "learn_dictionary": "learn",
    "SparseCodes": "omp",
    "batch_omp": "omp",
    "masked_batch_omp": "omp",
    "PatchAverager": "patches",
    "PatchGrid": "patches",
    "ksvd_denoise": "denoise",
    "reconstruct_with_dictionary": "denoise",
    "collaborative_wiener": "wiener",
    "tv_denoise": "tv",
    "Detector": "anomaly",
    "DetectorSettings": "anomaly",
    "fit_detector": "anomaly",
    # Inpainting is spmcli.inpaint.inpaint: a package attribute of that name would clash with the module.
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spmcli' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "KSVD",
    "Dictionary",
    "DictionaryFormatError",
    "Image",
    "ImageReadError",
    "ImageWriteError",
    "PatchAverager",
    "PatchGrid",
    "SparseCodes",
    "SpmcliError",
    "__version__",
    "atoms_mosaic",
    "batch_omp",
    "dct_dictionary",
    "find_images",
    "learn_dictionary",
    "load_dictionary",
    "masked_batch_omp",
    "read_image",
    "save_dictionary",
    "write_image",
    "ksvd_denoise",
    "reconstruct_with_dictionary",
    "collaborative_wiener",
    "tv_denoise",
    "Detector",
    "DetectorSettings",
    "fit_detector",
]
