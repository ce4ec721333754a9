"""Reading and writing images (PNG, JPEG, TIFF, BMP; grey, colour, alpha; 8/16-bit
and float), expanding IMAGES arguments, and atomic file writes.

The bottom layer of spmcli: it imports nothing else of the package but
:mod:`spmcli.errors`.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "DEFAULT_MAX_PIXELS": "images",
    "IMAGE_EXTENSIONS": "images",
    "Image": "images",
    "find_images": "finding",
    "read_image": "images",
    "to_dtype": "images",
    "to_grey": "images",
    "write_image": "images",
    "atomic_path": "atomic",
    "atomic_write_text": "atomic",
}
__getattr__, __dir__ = lazy_attributes(__name__, globals(), _EXPORTS, ("images", "finding", "atomic"))
__all__ = sorted(_EXPORTS)
