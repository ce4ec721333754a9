"""One image through ``spmcli reconstruct``: K-SVD denoising (dictionary learned
from the image itself) or reconstruction over a given dictionary, then the
collaborative Wiener step."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..batch import ProgressCallback, Task
from ..errors import SpmcliError
from ..io.images import read_image, write_image
from ..restoration.collaborative_denoising import collaborative_denoise
from ..restoration.denoising import (
    DEFAULT_GAIN,
    LAMBDA_NUMERATOR,
    error_target,
    ksvd_denoise,
    reconstruct_with_dictionary,
)
from ..restoration.noise import estimate_noise_sigma
from ..restoration.wiener import collaborative_wiener
from ._shared import dictionary_for, quality, quality_text, read_reference, stored

__all__ = ["ReconstructSettings", "reconstruct_image"]

CLIPPED = {"auto": None, "yes": True, "no": False}


@dataclass(frozen=True)
class ReconstructSettings:
    """Everything ``reconstruct`` needs besides the input and output paths.

    ``sigma`` is ``"auto"`` or a number on the 0..255 scale; ``use_sigma`` says
    whether a noise level is used at all (not with ``--dict --sparsity`` alone);
    ``clipped`` is ``"auto"``, ``"yes"`` or ``"no"`` (denoisers only);
    ``threads`` is how many threads the collaborative steps of one image may
    use (the cores the batch leaves free): it changes no output, so the
    report lists it under ``execution``, not among the settings.
    """

    dictionary: str | None = None
    denoiser: str = "collaborative"
    sigma: float | str = "auto"
    use_sigma: bool = True
    sparsity: int | None = None
    patch_size: int = 8
    n_atoms: int = 256
    iterations: int = 10
    training_patches: int | None = None
    method: str = "approx"
    gain: float = DEFAULT_GAIN
    noisy_weight: float | None = None
    stride: int = 1
    wiener: bool = True
    clipped: str = "auto"
    reference: str | None = None
    seed: int = 0
    max_pixels: int | None = None
    threads: int = field(default=1, metadata={"execution": True})


def reconstruct_image(task: Task, settings: ReconstructSettings, progress: ProgressCallback | None = None) -> dict:
    """Denoise or rebuild ``task.input`` into ``task.output``; return the record fields."""
    image = read_image(task.input, max_pixels=settings.max_pixels)
    reference_path, reference = read_reference(settings.reference, image, settings.max_pixels)
    dictionary = None
    patch_size = settings.patch_size
    if settings.dictionary is not None:
        dictionary = dictionary_for(settings.dictionary, image)
        patch_size = dictionary.patch_size
    if min(image.height, image.width) < patch_size:
        raise SpmcliError(
            f"image is {image.width} x {image.height} pixels, smaller than the {patch_size} x {patch_size} patch"
        )

    # Sigma on the 0..1 pixel scale; records use the 0..255 scale for every dtype.
    sigma_unit = sigma_source = None
    if settings.use_sigma:
        if settings.sigma == "auto":
            sigma_unit, sigma_source = estimate_noise_sigma(image.pixels), "estimated"
        else:
            sigma_unit, sigma_source = float(settings.sigma) / 255.0, "given"

    if sigma_unit is not None and sigma_unit <= 0:
        # Nothing to remove: a noise-free image is its own best estimate.
        result, used, mean_atoms = image.pixels, {"note": "sigma is 0: image copied unchanged"}, 0.0
    elif dictionary is None and settings.denoiser == "collaborative":
        denoised = collaborative_denoise(
            image.pixels, sigma_unit, patch_size=patch_size, clipped=CLIPPED[settings.clipped],
            n_threads=settings.threads, callback=progress,
        )  # fmt: skip
        result, used, mean_atoms = denoised.image, denoised.settings, None
    elif dictionary is None:
        denoised = ksvd_denoise(
            image.pixels, sigma_unit, patch_size=patch_size, n_atoms=settings.n_atoms,
            n_iterations=settings.iterations, training_patches=settings.training_patches,
            method="exact" if settings.method == "ksvd" else settings.method, gain=settings.gain,
            noisy_weight=settings.noisy_weight, stride=settings.stride, wiener=settings.wiener, seed=settings.seed,
            clipped=CLIPPED[settings.clipped], n_threads=settings.threads, callback=progress,
        )  # fmt: skip
        result, used, mean_atoms = denoised.image, denoised.settings, denoised.mean_atoms
    else:
        tol = None if sigma_unit is None else error_target(sigma_unit, dictionary.n_features, settings.gain)
        weight = 0.0
        if sigma_unit is not None:
            weight = (
                settings.noisy_weight if settings.noisy_weight is not None else LAMBDA_NUMERATOR / (255 * sigma_unit)
            )
        apply_wiener = settings.wiener and sigma_unit is not None
        result, mean_atoms = reconstruct_with_dictionary(
            image.pixels, dictionary, sparsity=settings.sparsity, tol=tol, stride=settings.stride,
            image_weight=weight, callback=progress,
        )  # fmt: skip
        if apply_wiener:
            result = collaborative_wiener(
                image.pixels, result, sigma_unit, patch_size=patch_size, n_threads=settings.threads, callback=progress
            )
        used = {
            "dictionary": settings.dictionary,
            "patch_size": dictionary.patch_size,
            "n_atoms": dictionary.n_atoms,
            "sparsity": settings.sparsity,
            "gain": settings.gain if tol is not None else None,
            "noisy_weight": weight,
            "stride": settings.stride,
            "wiener": apply_wiener,
        }
    written = write_image(task.output, result, dtype=image.dtype, alpha=image.alpha)
    fields = {
        "mode": f"{settings.denoiser}-denoise" if dictionary is None else "dictionary",
        "dtype": written,
        "shape": list(image.pixels.shape),
        "sigma": None if sigma_unit is None else sigma_unit * 255.0,
        "sigma_source": sigma_source,
        "settings": used,
        "mean_atoms_per_patch": mean_atoms,
    }
    if reference is not None:
        # Measure what was written: the output after conversion to its dtype.
        fields["reference"] = str(reference_path)
        fields.update(quality(reference, stored(result, written), image.pixels))
    return fields


def summary(record: dict) -> str:
    """The line ``reconstruct`` prints for a finished record."""
    sigma = ""
    if record.get("sigma") is not None:
        sigma = f"sigma {record['sigma']:.2f} ({record['sigma_source']}), "
    atoms = record.get("mean_atoms_per_patch")
    coding = f"{atoms:.2f} atoms/patch" if atoms is not None else record["mode"]
    return f"{record['input']} -> {record['output']}: {sigma}{coding}{quality_text(record)}, {record['seconds']:.1f} s"
