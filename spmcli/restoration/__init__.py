"""Image restoration built on the sparse core: denoising by collaborative
filtering (BM3D's two steps) and by K-SVD, reconstruction over a dictionary,
inpainting, total-variation denoising (with its SURE check), noise-level
estimation and the correction for noise clipped at black and white.

Plain functions on numpy arrays on the 0..1 scale; a scale that cannot be meant
for such data (a 0..255 sigma, say) is a ``ValueError`` saying so.
"""

from .._lazy import lazy_attributes

_EXPORTS = {
    "DenoiseResult": "denoising",
    "ksvd_denoise": "denoising",
    "reconstruct_with_dictionary": "denoising",
    "collaborative_wiener": "wiener",
    "CollaborativeResult": "collaborative_denoising",
    "collaborative_denoise": "collaborative_denoising",
    "collaborative_hard_thresholding": "hard_thresholding",
    "InpaintResult": "inpainting",
    "inpaint": "inpainting",
    "TVResult": "total_variation",
    "tv_denoise": "total_variation",
    "estimate_noise_sigma": "noise",
    "pca_noise_sigma": "noise",
    "declip": "clipping",
}
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    _EXPORTS,
    (
        "denoising",
        "collaborative_denoising",
        "collaborative",
        "block_matching",
        "patch_transforms",
        "hard_thresholding",
        "wiener",
        "inpainting",
        "total_variation",
        "tv_solvers",
        "tv_sure",
        "noise",
        "clipping",
    ),
)
__all__ = sorted(_EXPORTS)
