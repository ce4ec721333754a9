"""Pieces the per-image tasks share: references, dictionaries loaded once per
process, and measuring what was written."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import SpmcliError
from ..io.images import IMAGE_EXTENSIONS, Image, read_image, to_dtype
from ..metrics import psnr, ssim
from ..sparse.dictionary import Dictionary, load_dictionary

_INTEGER_SCALE = {"uint8": 255.0, "uint16": 65535.0}


def find_reference(reference: str | None, source: str | Path) -> Path | None:
    """The clean image to compare ``source``'s result with: the ``--reference``
    file itself, or in a ``--reference`` folder the file of the same name (else
    the same stem with any image extension)."""
    if reference is None:
        return None
    location, source = Path(reference), Path(source)
    if not location.is_dir():
        return location
    same_name = location / source.name
    if same_name.is_file():
        return same_name
    for extension in IMAGE_EXTENSIONS:
        candidate = location / (source.stem + extension)
        if candidate.is_file():
            return candidate
    raise SpmcliError(f"no reference image named {source.name} (or {source.stem}.*) in {location}", source)


def read_reference(reference: str | None, image: Image, max_pixels: int) -> tuple[Path | None, np.ndarray | None]:
    """The reference image for ``image`` (see :func:`find_reference`), checked to
    have the same shape; ``(None, None)`` without ``--reference``."""
    path = find_reference(reference, image.path)
    if path is None:
        return None, None
    pixels = read_image(path, max_pixels=max_pixels).pixels
    if pixels.shape != image.pixels.shape:
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        raise SpmcliError(
            f"reference {path} is {pixels.shape[1]} x {pixels.shape[0]} with {channels} channel(s); "
            f"the image is {image.width} x {image.height} with {image.n_channels}",
            image.path,
        )
    return path, pixels


def stored(pixels: np.ndarray, written_dtype: str) -> np.ndarray:
    """What a file written from ``pixels`` as ``written_dtype`` holds, back on the 0..1 scale."""
    values = to_dtype(pixels, written_dtype).astype(np.float64)
    return values / _INTEGER_SCALE.get(written_dtype, 1.0)


def quality(reference: np.ndarray, output: np.ndarray, source: np.ndarray) -> dict:
    """``psnr`` and ``ssim`` of the output, and ``psnr_input`` of the input, against the reference."""
    return {"psnr": psnr(reference, output), "ssim": ssim(reference, output), "psnr_input": psnr(reference, source)}


def quality_text(record: dict) -> str:
    """``, PSNR a -> b dB, SSIM s`` for a summary line (no arrow when the input is the reference)."""
    if record.get("psnr") is None:
        return ""
    before = record.get("psnr_input")
    change = f"{before:.2f} -> " if before is not None and before != float("inf") else ""
    return f", PSNR {change}{record['psnr']:.2f} dB, SSIM {record['ssim']:.3f}"


@lru_cache(maxsize=4)
def _load(path: str, size: int, modified: int) -> Dictionary:
    return load_dictionary(path)


def dictionary_for(path: str, image: Image) -> Dictionary:
    """The dictionary in ``path`` (read once per process), checked to fit ``image``'s channels."""
    dictionary = cached_dictionary(path)
    if dictionary.n_channels != image.n_channels:
        raise SpmcliError(
            f"dictionary has {dictionary.n_channels} channel(s) but {image.path} has {image.n_channels}", path
        )
    return dictionary


def cached_dictionary(path: str) -> Dictionary:
    """``load_dictionary(path)``, read once per process (a worker serves many images)."""
    try:
        status = os.stat(path)
    except OSError:
        return load_dictionary(path)  # raises the usual error
    return _load(str(path), status.st_size, status.st_mtime_ns)
