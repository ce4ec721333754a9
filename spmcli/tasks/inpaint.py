"""One image through ``spmcli inpaint``: which pixels are missing, filling them,
writing the result (observed pixels unchanged)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..batch import ProgressCallback, Task
from ..errors import SpmcliError
from ..io.images import Image, read_image, to_dtype, write_image
from ..metrics import psnr, ssim
from ..restoration.inpainting import inpaint
from ._shared import dictionary_for, read_reference, stored

__all__ = ["InpaintSettings", "inpaint_image", "missing_from_mask", "missing_from_value"]


@dataclass(frozen=True)
class InpaintSettings:
    """Everything ``inpaint`` needs besides the input and output paths."""

    mask: str | None = None
    mask_invert: bool = False
    missing_value: float | None = None
    dictionary: str | None = None
    patch_size: int = 8
    n_atoms: int = 256
    passes: int | None = None
    learn_iterations: int = 0
    sparsity: int = 8
    stride: int = 3
    first_guess: str = "auto"
    reference: str | None = None
    seed: int = 0
    max_pixels: int | None = None


def missing_from_mask(mask: Image, shape: tuple[int, int], invert: bool) -> np.ndarray:
    """A mask image to a boolean "missing" array: nonzero in any channel is
    missing (zero is missing with ``invert``)."""
    if mask.pixels.shape[:2] != shape:
        raise SpmcliError(
            f"mask is {mask.width} x {mask.height} pixels but the image is {shape[1]} x {shape[0]}", mask.path
        )
    nonzero = mask.pixels != 0 if mask.pixels.ndim == 2 else np.any(mask.pixels != 0, axis=2)
    return ~nonzero if invert else nonzero


# The values each integer sample type can hold.
_STORED_RANGE = {"uint8": (255, "an 8-bit"), "uint16": (65535, "a 16-bit")}


def missing_from_value(image: Image, value: float) -> np.ndarray:
    """Pixels whose every channel equals ``value`` in the file's own units
    (0..255 for 8-bit, 0..65535 for 16-bit, as stored for float).

    A value no sample of the file can hold (outside the range of an integer
    type, or not a whole number for one) is an error rather than "nothing
    missing": it is a mistake in the command, not a complete image."""
    if image.dtype in _STORED_RANGE:
        largest, name = _STORED_RANGE[image.dtype]
        if not (0 <= value <= largest and float(value).is_integer()):
            raise SpmcliError(
                f"--missing-value {value:g} cannot occur in {name} image (whole numbers 0..{largest})", image.path
            )
    equal = to_dtype(image.pixels, image.dtype) == value
    return equal if equal.ndim == 2 else np.all(equal, axis=2)


def inpaint_image(task: Task, settings: InpaintSettings, progress: ProgressCallback | None = None) -> dict:
    """Fill the missing pixels of ``task.input`` into ``task.output``; return the record fields."""
    started = time.perf_counter()
    image = read_image(task.input, max_pixels=settings.max_pixels)
    if settings.mask is not None:
        mask = read_image(settings.mask, max_pixels=settings.max_pixels)
        missing = missing_from_mask(mask, image.pixels.shape[:2], settings.mask_invert)
    else:
        missing = missing_from_value(image, settings.missing_value)
    reference_path, reference = read_reference(settings.reference, image, settings.max_pixels)
    fields: dict = {"missing_share": float(missing.mean()), "n_missing": int(missing.sum())}
    if not missing.any():
        written = write_image(task.output, image.pixels, dtype=image.dtype, alpha=image.alpha)
        fields.update(dtype=written, stages={}, note="nothing missing; copied unchanged")
        return fields
    if missing.all():
        raise SpmcliError("every pixel is missing; there is nothing to fill from", settings.mask or task.input)
    dictionary = None
    patch_size = settings.patch_size
    if settings.dictionary is not None:
        dictionary = dictionary_for(settings.dictionary, image)
        patch_size = dictionary.patch_size
    result = inpaint(
        image.pixels,
        missing,
        atoms=None if dictionary is None else dictionary.atoms,
        patch_size=patch_size,
        remove_mean=True if dictionary is None else dictionary.remove_mean,
        n_atoms=settings.n_atoms,
        threshold_passes=settings.passes,
        stride=settings.stride,
        learn_iterations=settings.learn_iterations,
        sparsity=settings.sparsity,
        coding_passes=1 if (settings.learn_iterations > 0 or dictionary is not None) else 0,
        first_guess=settings.first_guess,
        seed=settings.seed,
        callback=progress,
    )
    written = write_image(task.output, result.pixels, dtype=image.dtype, alpha=image.alpha)
    fields.update(dtype=written, stages=result.stages, fill_seconds=round(time.perf_counter() - started, 4))
    if reference is not None:
        output = stored(result.pixels, written)
        fields["reference"] = str(reference_path)
        fields["psnr"] = psnr(reference, output)
        fields["ssim"] = ssim(reference, output)
        fields["psnr_missing"] = psnr(reference[missing], output[missing])
    return fields


def summary(record: dict) -> str:
    """The line ``inpaint`` prints for a finished record."""
    if not record["n_missing"]:
        return f"{record['input']}: no pixel is missing; copied unchanged -> {record['output']}"
    text = (
        f"{record['input']}: filled {record['n_missing']:,} missing pixels ({record['missing_share']:.1%}) "
        f"in {record['seconds']:.1f} s"
    )
    if record.get("psnr") is not None:
        text += f"; PSNR {record['psnr']:.2f} dB (missing pixels: {record['psnr_missing']:.2f} dB)"
    return f"{text} -> {record['output']}"
