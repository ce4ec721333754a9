"""One image through ``spmcli tv-denoise``: total-variation denoising with the
automatic (or given) weight."""

from __future__ import annotations

from dataclasses import dataclass

from ..batch import ProgressCallback, Task
from ..io.images import read_image, write_image
from ..restoration.total_variation import tv_denoise
from ._shared import quality, quality_text, read_reference, stored

__all__ = ["TVSettings", "tv_denoise_image"]


@dataclass(frozen=True)
class TVSettings:
    """Everything ``tv-denoise`` needs besides the input and output paths.

    ``weight`` is ``"auto"`` or spmcli's weight (0..1 scale); ``sigma`` is
    ``"auto"`` or a noise level on the 0..255 scale.
    """

    weight: float | str = "auto"
    sigma: float | str = "auto"
    method: str = "chambolle"
    anisotropic: bool = False
    separate_channels: bool = False
    max_iterations: int | None = None
    reference: str | None = None
    max_pixels: int | None = None


def tv_denoise_image(task: Task, settings: TVSettings, progress: ProgressCallback | None = None) -> dict:
    """Denoise ``task.input`` into ``task.output``; return the record fields."""
    image = read_image(task.input, max_pixels=settings.max_pixels)
    reference_path, reference = read_reference(settings.reference, image, settings.max_pixels)
    result = tv_denoise(
        image.pixels,
        settings.weight,
        sigma=None if settings.sigma == "auto" else float(settings.sigma) / 255.0,
        method=settings.method,
        anisotropic=settings.anisotropic,
        joint_channels=not settings.separate_channels,
        max_iterations=settings.max_iterations,
    )
    written = write_image(task.output, result.image, dtype=image.dtype, alpha=image.alpha)
    fields = {
        "dtype": written,
        "method": result.method,
        "weight": result.weight,
        "weight_source": "auto" if settings.weight == "auto" else "given",
        "rule_weight": result.rule_weight,
        "solver_weight": result.solver_weight,
        "sigma": None if result.sigma is None else result.sigma * 255.0,
        "sigma_source": None if result.sigma is None else ("estimated" if settings.sigma == "auto" else "given"),
        "joint_channels": result.joint_channels,
        "iterations": result.iterations,
        "max_iterations": result.max_iterations,
    }
    if reference is not None:
        # Compare what was written (after rounding to the output's dtype), not the float result.
        fields["reference"] = str(reference_path)
        fields.update(quality(reference, stored(result.image, written), image.pixels))
    return fields


def summary(record: dict) -> str:
    """The line ``tv-denoise`` prints for a finished record."""
    if record["sigma"] is not None:
        how = f"auto, sigma {record['sigma']:.1f}/255 {record['sigma_source']}"
        if record["rule_weight"] is not None and record["weight"] != record["rule_weight"]:
            how += f", SURE: {record['weight'] / record['rule_weight']:.2f} x rule"
    else:
        how = "given"
    text = f"{record['input']}: weight {record['weight']:.4g} ({how}), {record['method']}, {record['seconds']:.2f} s"
    return f"{text}{quality_text(record)} -> {record['output']}"
