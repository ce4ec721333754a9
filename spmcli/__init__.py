"""spmcli: sparse modeling for folders of images.

The package is layered; the folder listing is the map, and imports run
downward only:

- :mod:`spmcli.cli`, :mod:`spmcli.commands`: the command line (Click);
- :mod:`spmcli.restoration`: denoising (K-SVD, collaborative Wiener),
  inpainting, total variation, noise estimates;
  :mod:`spmcli.inspection`: the defect detector and its reports;
- :mod:`spmcli.sparse`: batch OMP, K-SVD, dictionaries, patches, learning;
- :mod:`spmcli.io`: images and atomic writes;
- :mod:`spmcli.errors`, :mod:`spmcli.metrics`: errors and quality measures.

The most used names are re-exported here, flat; every subpackage is an
attribute after a plain ``import spmcli``, loaded on first use::

    >>> import numpy as np
    >>> import spmcli
    >>> atoms = spmcli.dct_dictionary(8, 256)
    >>> codes = spmcli.batch_omp(np.zeros((3, 64)), atoms, sparsity=4)
    >>> codes.n_nonzero.tolist()
    [0, 0, 0]
    >>> spmcli.restoration.tv_denoise is spmcli.tv_denoise
    True
"""

from ._lazy import lazy_attributes
from ._version import __version__

# Public name -> module that defines it (relative to spmcli).
_EXPORTS = {
    "DictionaryFormatError": "errors",
    "ImageReadError": "errors",
    "ImageWriteError": "errors",
    "SpmcliError": "errors",
    "Image": "io.images",
    "find_images": "io.finding",
    "read_image": "io.images",
    "write_image": "io.images",
    "SparseCodes": "sparse.omp",
    "batch_omp": "sparse.omp",
    "masked_batch_omp": "sparse.omp",
    "KSVD": "sparse.ksvd",
    "Dictionary": "sparse.dictionary",
    "atoms_mosaic": "sparse.dictionary",
    "dct_dictionary": "sparse.dictionary",
    "load_dictionary": "sparse.dictionary",
    "save_dictionary": "sparse.dictionary",
    "PatchAverager": "sparse.patches",
    "PatchGrid": "sparse.patches",
    "learn_dictionary": "sparse.learning",
    "ksvd_denoise": "restoration.denoising",
    "reconstruct_with_dictionary": "restoration.denoising",
    "collaborative_wiener": "restoration.wiener",
    "collaborative_denoise": "restoration.collaborative_denoising",
    "inpaint": "restoration.inpainting",
    "tv_denoise": "restoration.total_variation",
    "estimate_noise_sigma": "restoration.noise",
    "Detector": "inspection.detector",
    "DetectorSettings": "inspection.settings",
    "fit_detector": "inspection.fitting",
    "psnr": "metrics",
    "ssim": "metrics",
}
_SUBPACKAGES = ("io", "sparse", "restoration", "inspection", "errors", "metrics")

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _EXPORTS, _SUBPACKAGES)
__all__ = ["__version__", *sorted(_EXPORTS), *_SUBPACKAGES]
