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

from ._version import __version__
from .dictionary import Dictionary, atoms_mosaic, dct_dictionary, load_dictionary, save_dictionary
from .errors import DictionaryFormatError, ImageReadError, ImageWriteError, SpmcliError
from .images import Image, find_images, read_image, write_image
from .ksvd import KSVD
from .learn import learn_dictionary
from .omp import SparseCodes, batch_omp, masked_batch_omp
from .patches import PatchAverager, PatchGrid

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
]
