"""Small previews of images, embedded in an HTML page as ``data:`` URIs.

Embedding keeps a report one self-contained file (it can be mailed or archived
and still shows its pictures); JPEG at 160-200 pixels costs about 4-8 kB an image.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..errors import SpmcliError
from ..io.images import read_image

__all__ = ["Thumbnail", "thumbnail"]

# Larger images are not decoded for a preview (a 50-megapixel scan would take seconds).
THUMBNAIL_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class Thumbnail:
    """A preview as a ``data:image/jpeg;base64,...`` URI.

    Attributes
    ----------
    uri : str
    width, height : int
        The preview's size.
    source_width, source_height : int
        The image's size (region boxes are in its pixels).
    """

    uri: str
    width: int
    height: int
    source_width: int
    source_height: int


def thumbnail(path: str | Path, max_side: int = 192, quality: int = 85) -> Thumbnail | None:
    """A JPEG preview of an image file, at most ``max_side`` pixels a side.

    Parameters
    ----------
    path : str or Path
        Any image spmcli reads (8/16-bit, float TIFF, grey, colour, alpha).
    max_side : int
    quality : int
        JPEG quality, 1..95.

    Returns
    -------
    Thumbnail or None
        None when the file is missing, unreadable or too large.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    try:
        image = read_image(path, max_pixels=THUMBNAIL_MAX_PIXELS)
    except (SpmcliError, OSError, ValueError):
        return None
    pixels = np.rint(np.clip(image.pixels, 0.0, 1.0) * 255).astype(np.uint8)
    picture = PILImage.fromarray(pixels)
    source_width, source_height = picture.size
    picture.thumbnail((max_side, max_side), PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Thumbnail(uri, picture.width, picture.height, source_width, source_height)
