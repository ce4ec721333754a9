"""The per-image stage of ``spmcli learn-dict``: read one image and draw its
share of training patches."""

from __future__ import annotations

from dataclasses import dataclass

from ..batch import ProgressCallback, Task
from ..errors import SpmcliError
from ..io.images import read_image, to_grey
from ..sparse.learning import sample_image_patches

__all__ = ["SampleSettings", "sample_training_patches"]


@dataclass(frozen=True)
class SampleSettings:
    """How training patches are drawn; each task's ``payload`` is its quota of patches."""

    patch_size: int = 8
    grayscale: bool = False
    seed: int = 0
    max_pixels: int | None = None


def sample_training_patches(task: Task, settings: SampleSettings, progress: ProgressCallback | None = None) -> dict:
    """Read ``task.input`` and sample ``task.payload`` patches (seeded by the task's position)."""
    image = read_image(task.input, max_pixels=settings.max_pixels)
    pixels = to_grey(image.pixels) if settings.grayscale else image.pixels
    if min(pixels.shape[:2]) < settings.patch_size:
        raise SpmcliError(
            f"image is {pixels.shape[1]} x {pixels.shape[0]} pixels, "
            f"smaller than the {settings.patch_size} x {settings.patch_size} patch"
        )
    patches = sample_image_patches(pixels, settings.patch_size, int(task.payload), settings.seed, task.index)
    return {"n_channels": 1 if pixels.ndim == 2 else pixels.shape[2], "patches": patches}
