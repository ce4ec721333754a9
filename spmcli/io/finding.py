"""Expanding IMAGES arguments (files, folders, glob patterns) into image paths,
leaving out spmcli's own pictures (heatmaps, overlays, masks)."""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

from PIL import Image as PILImage

from ..errors import SpmcliError
from .images import IMAGE_EXTENSIONS, OUTPUT_MARKER

__all__ = ["find_images", "is_spmcli_output"]


def _is_file_or_broken_link(path: Path) -> bool:
    """A file, or a symbolic link to nothing: listed, so that reading it says
    "broken symbolic link" rather than the link being left out without a word."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_spmcli_output(path: str | Path) -> bool:
    """Whether ``path`` is one of spmcli's own pictures (written with
    :data:`OUTPUT_MARKER`): a heatmap, overlay or mask. Reads the header only."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".tif", ".tiff"):
        return False
    try:
        if path.suffix.lower() == ".png":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with PILImage.open(path) as picture:
                    return picture.info.get("Software", "") == OUTPUT_MARKER
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            return bool(tiff.pages) and tiff.pages[0].software == OUTPUT_MARKER
    except Exception:  # an unreadable file is not ours; reading it later says what is wrong
        return False


def find_images(arguments: list[str] | tuple[str, ...], skipped: list[Path] | None = None) -> list[Path]:
    """Expand files, folders and glob patterns into a stable list of image paths.

    A file named explicitly is kept whatever its extension (reading it then
    says what is wrong); a folder contributes its image files (by extension,
    not recursively, hidden files skipped) sorted by name; a pattern (quoted
    so the shell leaves it alone) contributes the image files it matches,
    sorted. Folders and patterns never contribute spmcli's own pictures
    (:func:`is_spmcli_output`: heatmaps, overlays, masks written into a folder
    that is also an input); they are appended to ``skipped`` when given.
    Duplicates are dropped, keeping the first. An argument that matches
    nothing raises :class:`SpmcliError`.
    """
    found: list[Path] = []
    seen: set[str] = set()

    def own_outputs_removed(images: list[Path]) -> list[Path]:
        kept = [image for image in images if not is_spmcli_output(image)]
        if skipped is not None:
            skipped.extend(image for image in images if image not in kept)
        return kept

    def add(path: Path) -> None:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            found.append(path)

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            images = sorted(
                child for child in path.iterdir() if _is_file_or_broken_link(child) and _is_image_name(child)
            )
            images = own_outputs_removed(images)
            if not images:
                raise SpmcliError("folder holds no image files (.png, .jpg, .tif, .bmp)", argument)
            for image in images:
                add(image)
        elif path.exists() or path.is_symlink():
            add(path)
        elif glob.has_magic(argument):
            matches = sorted(Path(match) for match in glob.glob(argument, recursive=True))
            images = own_outputs_removed(
                [match for match in matches if _is_file_or_broken_link(match) and _is_image_name(match)]
            )
            if not images:
                raise SpmcliError("pattern matches no image files", argument)
            for image in images:
                add(image)
        else:
            raise SpmcliError("no such file or folder", argument)
    return found
