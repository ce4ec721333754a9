"""Patch features of the defect detector: the working pyramid of an image and,
at every scale, a descriptor of each patch of a strided grid.

Every image is first brought to grey and divided by its own typical level (the
median of the first working image, its *gain*), so a brighter or darker
exposure of a good part gives the same descriptors: lighting changes between
images are not defects. Each working image is blurred by as much as the good
images' pixel noise calls for (:func:`working_noise`, :func:`blur_for_noise`):
not at all on clean images. The features, by group (see
:data:`spmcli.inspection.settings.FEATURE_GROUPS`):

structure
    ``log`` of the RMS residual of the mean-removed patch after sparse coding
    (OMP, ``sparsity`` atoms) over the dictionary learned from good images:
    what the good texture's atoms cannot express (cracks, scratches, spots).
code
    ``log`` of the l1 norm of the patch's sparse code: how much of the learned
    texture the patch holds. Residual and code together describe a patch in
    terms of the sparse model, as in Carrera, Boracchi et al. [1]_, [2]_.
contrast
    ``log`` of the standard deviation of the patch: low where texture is
    missing, high where there is more structure than usual.
intensity
    The patch mean relative to the image's level, minus 1 (``-0.3``: 30%
    darker than the image's typical level): stains, dark or bright areas.
orientation
    The coherence vector of the structure tensor averaged over the patch [3]_,
    ``((Jxx - Jyy), 2 Jxy) / (Jxx + Jyy)``: its length says how strongly the
    patch is oriented (1 for a single straight edge or line), its angle
    which way. A scratch across a texture of other directions stands out.
lines
    ``log`` of the patch maxima of the strongest dark and bright line
    response over 12 orientations (:func:`line_responses`: second derivative
    across an elongated Gaussian [5]_ [6]_, edges partly suppressed): long
    thin scratches and cracks, in units of the level (about the line's
    contrast with its sides). ``line_length=0``: the isotropic Hessian ridge
    at scale 1 instead.
spots
    ``log`` of the patch maxima of the dark and the bright morphological
    top-hat (closing minus image, image minus opening) with a 13 x 13 square
    [4]_: dark or bright spots and short lines narrower than the square.
colour
    Only when the good images are in colour: the patch's chromaticity in two
    opponent axes, red-green ``(R - G) / (sqrt(2) L)`` and blue-yellow
    ``(R + G - 2 B) / (sqrt(6) L)`` with ``L = (R + G + B) / 3``, of the
    patch means of the channels, minus the image's median patch on each
    axis: 0 is the image's typical colour, and brightness cancels out. A
    tint or stain of another hue at the same brightness, which grey cannot
    show, stands out, while a slight colour cast of the light, which moves
    every patch alike, is taken out with the median (the grey-world idea of
    white balance [7]_, on the median patch rather than each channel's
    median pixel, so that the defect itself does not move the reference
    much).

All other values are of the *grey, blurred, gain-normalised* working image; the
density model standardises them (see :mod:`spmcli.inspection.density`).

References
----------
.. [1] D. Carrera, F. Manganini, G. Boracchi and E. Lanzarone, "Defect
       detection in SEM images of nanofibrous materials", IEEE Trans.
       Industrial Informatics 13(2), 2017 (residual and l1 norm of the sparse
       code, jointly, as the patch's indicator vector).
.. [2] D. Carrera, G. Boracchi, A. Foi and B. Wohlberg, "Detecting anomalous
       structures by convolutional sparse models", IJCNN 2015.
.. [3] J. Bigun and G. H. Granlund, "Optimal orientation detection of linear
       symmetry", ICCV 1987 (the structure tensor and its coherence).
.. [4] P. Soille, "Morphological Image Analysis", 2nd ed., Springer 2003,
       section 4.4 (top-hat transforms for thin dark and bright structures).
.. [5] W. T. Freeman and E. H. Adelson, "The design and use of steerable
       filters", IEEE Trans. PAMI 13(9), 1991 (oriented second-derivative
       filters, elongated variants for lines).
.. [6] C. Steger, "An unbiased detector of curvilinear structures", IEEE
       Trans. PAMI 20(2), 1998 (lines as maxima of the second derivative
       across, edges told apart by the first derivative).
.. [7] G. Buchsbaum, "A spatial processor model for object colour
       perception", J. Franklin Institute 310(1), 1980 (the grey-world
       assumption: the scene's average colour is the light's).
.. [8] D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by
       wavelet shrinkage", Biometrika 81(3), 1994 (the noise's standard
       deviation from the median absolute finest-scale wavelet coefficient).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft, ndimage
from skimage.transform import downscale_local_mean, resize

from ..io.images import to_grey
from ..sparse.omp import batch_omp
from ..sparse.patches import PatchGrid
from .settings import COLOUR_GROUPS, DetectorSettings, expert_groups

__all__ = [
    "FEATURE_NAMES",
    "ScaleFeatures",
    "blur_for_noise",
    "detector_planes",
    "feature_names",
    "feature_reach",
    "grey_image",
    "grey_plane",
    "has_colour",
    "level_gain",
    "minimum_side",
    "scale_features",
    "uses_colour",
    "window_features",
    "working_noise",
    "working_pyramid",
]

FEATURE_NAMES = {
    "structure": ("structure",),
    "code": ("code",),
    "contrast": ("contrast",),
    "intensity": ("intensity",),
    "orientation": ("orientation_x", "orientation_y"),
    "lines": ("dark_lines", "bright_lines"),
    "spots": ("dark_spots", "bright_spots"),
    "colour": ("colour_red_green", "colour_blue_yellow"),
}
# Features taken as a logarithm: their floor keeps them finite on flat
# patches and sits near the noise of an 8-bit image once gain-normalised, so
# differences between two practically flat patches do not count.
LOG_FEATURES = ("structure", "code", "contrast", "dark_lines", "bright_lines", "dark_spots", "bright_spots")
_LOG_FLOOR = 2e-3
# Square closing/opening size (working pixels) of the spot features.
_LINE_SIZE = 13
# Gaussian scale (working pixels) of the Hessian of the line features.
_RIDGE_SIGMA = 1.0
# An image's level never counts as darker than this (a black image stays finite).
_GAIN_FLOOR = 0.02
# A patch's level (the mean of its channels over the image's level, 1 =
# typical) never counts as darker than this in its chromaticity: near-black
# patches, whose colour is noise, stay near the typical colour.
_CHROMA_LEVEL_FLOOR = 0.1
# Gradient energy (gain-normalised units, squared) below which a patch has no
# meaningful orientation: keeps the coherence of flat patches near zero.
_ORIENTATION_FLOOR = 1e-4
# The automatic blur brings the good images' pixel noise (relative to their
# level) down to this: chosen on the dev halves, where every set but the grass
# photograph (noise 0.08) has noise under 0.01 and scores best unblurred, and
# grass best at a blur of about 1 (BENCHMARKS.md, "How much blur").
NOISE_TARGET = 0.02
# Never more blur than this (working pixels): the fixed blur of the first
# releases. More did worse wherever it was measured: grass at 1.5 and 2, and
# brick and moon photographs with noise of 5% added, where the rule asks for
# 1.6-1.7 (BENCHMARKS.md, "How much blur").
MAX_BLUR = 1.0


def feature_names(groups: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the individual features of the given groups, in descriptor order."""
    return tuple(name for group in groups for name in FEATURE_NAMES[group])


def expert_columns(settings: DetectorSettings) -> list[tuple[str, np.ndarray]]:
    """Each expert's name and the descriptor columns (features) it watches."""
    names = feature_names(settings.features)
    found = []
    for name, groups in expert_groups(settings.experts, settings.features):
        watched = set(feature_names(groups))
        found.append((name, np.array([i for i, feature in enumerate(names) if feature in watched], dtype=np.int64)))
    return found


# Sizes within this share of each other count as one size give or take the
# cut (a part cut out by a fixture or a detector varies by a few pixels).
NEAR_SIZE = 0.1


def size_difference(shape: tuple[int, ...], reference: tuple[int, ...]) -> float:
    """The larger relative difference of the two sides of ``shape`` from ``reference``'s."""
    return max(abs(shape[axis] - reference[axis]) / reference[axis] for axis in (0, 1))


def minimum_side(settings: DetectorSettings, patch_size: int) -> int:
    """Smallest image side (pixels) the detector can score (``settings.downscale`` resolved)."""
    return patch_size * (settings.downscale or 1) * 2 ** (settings.n_scales - 1)


def grey_image(pixels: np.ndarray, image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Grey values of an image, resized to ``image_shape`` when given and different."""
    return _to_shape(to_grey(pixels), image_shape)


def _to_shape(plane: np.ndarray, image_shape: tuple[int, int] | None) -> np.ndarray:
    """One plane resized to ``image_shape`` when given and different."""
    if image_shape is None or plane.shape == tuple(image_shape):
        return plane
    return resize(plane, image_shape, order=1, anti_aliasing=True, mode="edge")


def has_colour(pixels: np.ndarray) -> bool:
    """Whether an image has colour: three channels or more, not all equal."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return False
    red, green, blue = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
    return bool(np.any(red != green) or np.any(green != blue))


def uses_colour(settings: DetectorSettings) -> bool:
    """Whether the settings' features need colour images."""
    return any(group in COLOUR_GROUPS for group in settings.features)


def detector_planes(pixels: np.ndarray, image_shape: tuple[int, int] | None = None, colour: bool = False) -> np.ndarray:
    """What the detector looks at in an image: its grey values ``(H, W)`` or,
    with ``colour``, grey and the red, green and blue channels ``(4, H, W)``;
    resized to ``image_shape`` when given and different.

    Raises
    ------
    ValueError
        With ``colour``, for an image without colour.
    """
    if not colour:
        return grey_image(pixels, image_shape)
    if not has_colour(pixels):
        raise ValueError("the image is grey, but the detector was learned on colour images")
    channels = np.asarray(pixels, dtype=np.float64)[:, :, :3]
    planes = [to_grey(channels), *channels.transpose(2, 0, 1)]
    return np.stack([_to_shape(plane, image_shape) for plane in planes])


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    # Crop to a multiple of the factor: downscale_local_mean pads with zeros,
    # which would paint a dark border the detector then flags.
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return downscale_local_mean(image[:height, :width], (factor, factor))


def working_pyramid(
    planes: np.ndarray, settings: DetectorSettings, patch_size: int, gain: float | None = None
) -> list[np.ndarray]:
    """Downscaled, blurred, gain-normalised working images, finest first.

    Parameters
    ----------
    planes : ndarray, shape (H, W) or (4, H, W)
        The grey image, 0..1, or grey and the colour channels
        (:func:`detector_planes`). Every plane is divided by the grey
        plane's median on the finest working image (the image's level, its
        gain, :func:`level_gain`), so the channels keep their balance.
    gain : float, optional
        Divide by this instead (1 keeps the raw levels).

    Raises
    ------
    ValueError
        When the image is too small for the coarsest scale's patches.
    """
    planes = np.asarray(planes, dtype=np.float64)
    height, width = planes.shape[-2:]
    needed = minimum_side(settings, patch_size)
    if min(height, width) < needed:
        raise ValueError(f"image is {width} x {height} pixels; the detector needs at least {needed} a side")
    per_plane = [_plane_pyramid(plane, settings) for plane in (planes if planes.ndim == 3 else [planes])]
    # One gain for every plane: the channels' balance is the colour.
    if gain is None:
        gain = level_gain(per_plane[0][0])
    if planes.ndim == 2:
        return [level / gain for level in per_plane[0]]
    return [np.stack([pyramid[scale] for pyramid in per_plane]) / gain for scale in range(settings.n_scales)]


def working_noise(pixels: np.ndarray, settings: DetectorSettings) -> float:
    """The pixel noise of an image's finest working image, before the blur,
    relative to its level: the wavelet estimate of Donoho and Johnstone [8]_
    (:func:`skimage.restoration.estimate_sigma`) divided by the median.

    Grain finer than the defects looked for (blades of grass, sensor noise)
    counts as noise too, which is what the blur is for.
    """
    # Imported here: skimage.restoration pulls in scipy.stats (about 1 s),
    # which `spmcli detect` never needs.
    from skimage.restoration import estimate_sigma

    plane = _reduce(grey_image(pixels), settings.downscale or 1)
    with warnings.catch_warnings():
        # A flat image leaves no nonzero detail coefficient to take the
        # median of (numpy warns, and the estimate is NaN): it has no noise.
        warnings.simplefilter("ignore", RuntimeWarning)
        noise = float(estimate_sigma(plane))
    if not math.isfinite(noise):
        noise = 0.0
    return noise / max(float(np.median(plane)), _GAIN_FLOOR)


def blur_for_noise(noise: float) -> float:
    """The automatic ``blur_sigma`` (working pixels, to 0.01) for good images
    of pixel noise ``noise`` (:func:`working_noise`): a Gaussian of ``s``
    pixels divides the standard deviation of white noise by about ``2 s
    sqrt(pi)``, so the blur brings the noise down to :data:`NOISE_TARGET`, at
    most :data:`MAX_BLUR`. Clean images (noise under about 0.01) are barely
    blurred: the line filters and the patches smooth enough by themselves,
    and a blur of 1 halves the contrast of a one-pixel scratch.

    Examples
    --------
    >>> blur_for_noise(0.004), blur_for_noise(0.03), blur_for_noise(0.08)
    (0.06, 0.42, 1.0)
    """
    return round(min(noise / (2 * math.sqrt(math.pi) * NOISE_TARGET), MAX_BLUR), 2)


def level_gain(level: np.ndarray) -> float:
    """An image's level: the median of the grey plane of its finest raw working image."""
    return max(float(np.median(grey_plane(level))), _GAIN_FLOOR)


def _plane_pyramid(plane: np.ndarray, settings: DetectorSettings) -> list[np.ndarray]:
    """One plane reduced by ``settings.downscale``, then halved per scale, each blurred."""
    if settings.blur_sigma is None:
        raise ValueError("blur_sigma is chosen when learning (fit_detector); these settings have none yet")
    levels = []
    current = _reduce(plane, settings.downscale or 1)
    for scale in range(settings.n_scales):
        if scale:
            current = _reduce(current, 2)
        levels.append(ndimage.gaussian_filter(current, settings.blur_sigma) if settings.blur_sigma > 0 else current)
    return levels


def grey_plane(level: np.ndarray) -> np.ndarray:
    """The grey plane of a working image (the first of its planes in colour)."""
    return level if level.ndim == 2 else level[0]


@dataclass
class ScaleFeatures:
    """The descriptors of one working image.

    Attributes
    ----------
    grid : PatchGrid
        Patch positions (top-left corners) on the working image.
    values : ndarray, shape (n_features, n_rows, n_cols)
        Raw features in :func:`feature_names` order (logarithms where noted).
    residual_rms : ndarray, shape (n_rows, n_cols)
        RMS coding residual of each patch (gain-normalised units).
    reconstruction : ndarray or None
        The coded patches with their means, ``(n_patches, patch_size**2)``,
        when asked for (PSNR/SSIM of the report).
    """

    grid: PatchGrid
    values: np.ndarray
    residual_rms: np.ndarray
    reconstruction: np.ndarray | None = None


def _box_means(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Mean of ``image`` over each grid patch, ``(n_rows, n_cols)``."""
    # A box filter of even size p centred at i covers i - p/2 .. i + p/2 - 1,
    # so the patch with top-left corner r is read at r + p // 2.
    box = ndimage.uniform_filter(image, grid.patch_size, mode="nearest")
    half = grid.patch_size // 2
    return box[np.ix_(grid.rows + half, grid.cols + half)]


def _orientation(level: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Coherence vector of the patch-averaged structure tensor, ``(2, rows, cols)``."""
    gy, gx = np.gradient(level)
    jxx = _box_means(gx * gx, grid)
    jyy = _box_means(gy * gy, grid)
    jxy = _box_means(gx * gy, grid)
    energy = jxx + jyy + _ORIENTATION_FLOOR
    return np.stack([(jxx - jyy) / energy, 2 * jxy / energy])


def _box_maxima(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Maximum of ``image`` over each grid patch, ``(n_rows, n_cols)``."""
    # One axis at a time, keeping only the grid's rows before filtering the
    # columns. A filter of even size p centred at i covers i - p/2 .. i + p/2 - 1,
    # so the patch starting at r is read at r + p // 2.
    half = grid.patch_size // 2
    rows = ndimage.maximum_filter1d(image, grid.patch_size, axis=0, mode="nearest")[grid.rows + half]
    return ndimage.maximum_filter1d(rows, grid.patch_size, axis=1, mode="nearest")[:, grid.cols + half]


def _chromaticity(channels: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Red-green and blue-yellow chromaticity of each patch, ``(2, rows, cols)``,
    from its mean red, green and blue, minus the median over the image's patches."""
    red, green, blue = (_box_means(channel, grid) for channel in channels)
    level = np.maximum((red + green + blue) / 3, _CHROMA_LEVEL_FLOOR)
    chromaticity = np.stack([(red - green) / (np.sqrt(2) * level), (red + green - 2 * blue) / (np.sqrt(6) * level)])
    # The median patch, not each channel's median pixel: a defect of another
    # hue moves the median patch's colour by a small share of the good
    # patches' own spread, whereas each channel's median moves with the
    # brightness spread of the texture, and would shift every patch's colour.
    return chromaticity - np.median(chromaticity.reshape(2, -1), axis=1)[:, None, None]


def _spots(level: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Patch maxima of the dark and the bright top-hat, ``(2, rows, cols)``."""
    size = (_LINE_SIZE, _LINE_SIZE)
    dark = ndimage.grey_closing(level, size=size, mode="nearest") - level
    bright = level - ndimage.grey_opening(level, size=size, mode="nearest")
    return np.stack([_box_maxima(dark, grid), _box_maxima(bright, grid)])


def _lines(level: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Patch maxima of dark and bright ridge strength, ``(2, rows, cols)``.

    From the Hessian's eigenvalues ``l1 >= l2`` at scale 1 (working pixels):
    a dark line has one large positive curvature across it and none along
    it, a dark spot two; ``max(l1, 0) - max(l2, 0)`` keeps lines and leaves
    spots (and flat areas) near zero. Bright lines likewise with ``-l2``.
    """
    hxx = ndimage.gaussian_filter(level, _RIDGE_SIGMA, order=(0, 2))
    hyy = ndimage.gaussian_filter(level, _RIDGE_SIGMA, order=(2, 0))
    hxy = ndimage.gaussian_filter(level, _RIDGE_SIGMA, order=(1, 1))
    half_trace = (hxx + hyy) / 2
    radius = np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    large, small = half_trace + radius, half_trace - radius
    dark = np.maximum(large, 0) - np.maximum(small, 0)
    bright = np.maximum(-small, 0) - np.maximum(-large, 0)
    return np.stack([_box_maxima(dark, grid), _box_maxima(bright, grid)])


# Orientations of the line filters (every 15 degrees).
_LINE_ORIENTATIONS = 12
# FFT sizes are rounded up to a multiple of this, so images of slightly
# different sizes share the cached filter spectra.
_FFT_BLOCK = 64
# Share of the edge filter's magnitude subtracted from the line filter's
# response. A step edge's flank still gives a line response of about 0.35 of
# the edge's height with 0.5 (0.2 with 1, 0.5 with none); measured on the dev halves (KolektorSDD,
# the line expert alone): 0 -> AUROC 0.957, 0.5 -> 0.966, 1 -> 0.918, where a
# full suppression also removes part of a crack beside a bright rim.
_EDGE_SUPPRESSION = 0.5


@lru_cache(maxsize=8)
def _line_filter_spectra(shape: tuple[int, int], sigma_across: float, sigma_along: float) -> np.ndarray:
    """Real FFTs of the oriented line and edge filters on a ``shape`` grid,
    ``(orientations, 2, h, w // 2 + 1)``: for each orientation, the second
    (line) and the first (edge) derivative across of an anisotropic Gaussian,
    centred at the origin, on one scale: a one-pixel line of depth ``d``
    gives ``d`` on the line filter, a step edge of height ``h`` at most about
    ``0.35 h`` after edge suppression (see :func:`line_responses`).
    """
    radius = int(np.ceil(3 * sigma_along))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    spectra = []
    for angle in np.arange(_LINE_ORIENTATIONS) * np.pi / _LINE_ORIENTATIONS:
        across = -x * np.sin(angle) + y * np.cos(angle)
        along = x * np.cos(angle) + y * np.sin(angle)
        gaussian = np.exp(-(across**2) / (2 * sigma_across**2) - along**2 / (2 * sigma_along**2))
        line = (across**2 / sigma_across**4 - 1 / sigma_across**2) * gaussian
        line -= line.mean()
        # The edge filter in the line filter's units (one more derivative is
        # one more 1 / sigma), so an edge's line response never exceeds its
        # edge response within one sigma of it.
        edge = -across / sigma_across**2 * gaussian / sigma_across
        scale = np.abs(line).sum() / 2
        pair = []
        for kernel in (line / scale, edge / scale):
            placed = np.zeros(shape, dtype=np.float32)
            placed[: kernel.shape[0], : kernel.shape[1]] = kernel
            pair.append(fft.rfft2(np.roll(placed, (-radius, -radius), axis=(0, 1))))
        spectra.append(pair)
    return np.array(spectra)


def line_responses(level: np.ndarray, sigma_along: float, sigma_across: float = 1.0) -> np.ndarray:
    """Strongest dark and bright line strength at every pixel, ``(2, h, w)``.

    A bank of oriented filters, each the second derivative across a line of
    an elongated Gaussian (``sigma_across`` across, ``sigma_along`` along):
    the oriented line detectors of Freeman & Adelson [5]_ and Steger [6]_. A
    thin dark line along the filter gives a large positive response, a bright
    one a large negative response, over a length of about ``2 * sigma_along``;
    texture that is dark or bright only in short pieces (gaps between stones,
    grain) averages out along the filter, a long thin scratch or crack does
    not. Half the magnitude of the first derivative across (the edge filter)
    is subtracted, so the flanks of an edge (the rim of a stain) are not
    taken for strong lines; the maximum over orientations is kept for each polarity, in
    the level's units (a line 30% darker than its surroundings: about 0.3).
    """
    radius = int(np.ceil(3 * sigma_along))
    # Borders are continued with their last value: zero padding would draw a
    # line along the border, and reflecting would mirror anything that meets
    # the border into a symmetric profile, which the filters take for a line.
    padded = np.pad(level.astype(np.float32), radius, mode="edge")
    shape = tuple(int(-(-side // _FFT_BLOCK) * _FFT_BLOCK) for side in padded.shape)
    spectrum = fft.rfft2(padded, s=shape)
    height, width = level.shape
    dark = np.zeros(level.shape, dtype=np.float32)
    bright = np.zeros(level.shape, dtype=np.float32)
    window = (slice(radius, radius + height), slice(radius, radius + width))
    for line_spectrum, edge_spectrum in _line_filter_spectra(shape, float(sigma_across), float(sigma_along)):
        line = fft.irfft2(spectrum * line_spectrum, s=shape)[window]
        edge = _EDGE_SUPPRESSION * np.abs(fft.irfft2(spectrum * edge_spectrum, s=shape)[window])
        np.maximum(dark, line - edge, out=dark)
        np.maximum(bright, -line - edge, out=bright)
    return np.stack([dark, bright]).astype(np.float64)


def scale_features(
    level: np.ndarray,
    atoms: np.ndarray,
    patch_size: int,
    settings: DetectorSettings,
    *,
    keep_reconstruction: bool = False,
) -> ScaleFeatures:
    """Descriptors of every grid patch of one working image.

    Parameters
    ----------
    level : ndarray, shape (h, w) or (4, h, w)
        A working image from :func:`working_pyramid` (with its colour
        channels when the ``colour`` features are asked for).
    atoms : ndarray, shape (n_atoms, patch_size**2)
        The dictionary (unit-norm rows, learned on mean-removed patches).
    patch_size : int
    settings : DetectorSettings
        ``stride``, ``sparsity`` and ``features`` are used.
    keep_reconstruction : bool
        Also return the coded patches (for PSNR/SSIM).

    Returns
    -------
    ScaleFeatures
    """
    planes = level if level.ndim == 3 else None
    level = grey_plane(level)
    grid = PatchGrid(level.shape, patch_size, settings.stride)
    shape = (grid.rows.size, grid.cols.size)
    patches = grid.extract(level)
    means = patches.mean(axis=1)
    centred = patches - means[:, None]
    codes = batch_omp(centred, atoms, sparsity=settings.sparsity, dtype=np.float32)
    residual_rms = np.sqrt(np.maximum(codes.residual_sq.astype(np.float64), 0.0) / patches.shape[1])
    values: list[np.ndarray] = []
    for group in settings.features:
        if group == "structure":
            values.append(np.log(residual_rms + _LOG_FLOOR).reshape(shape))
        elif group == "code":
            l1 = np.abs(codes.coefficients.astype(np.float64)).sum(axis=1)
            # Per pixel, like the residual, so both live on one scale.
            values.append(np.log(l1 / patch_size + _LOG_FLOOR).reshape(shape))
        elif group == "contrast":
            values.append(np.log(centred.std(axis=1) + _LOG_FLOOR).reshape(shape))
        elif group == "intensity":
            values.append((means - 1.0).reshape(shape))
        elif group == "orientation":
            values.extend(_orientation(level, grid))
        elif group == "lines":
            if settings.line_length > 0:
                responses = line_responses(level, settings.line_length)
                lines = np.stack([_box_maxima(response, grid) for response in responses])
            else:
                lines = _lines(level, grid)
            values.extend(np.log(lines + _LOG_FLOOR))
        elif group == "spots":
            values.extend(np.log(_spots(level, grid) + _LOG_FLOOR))
        elif group == "colour":
            if planes is None:
                raise ValueError("the colour features need the image's colour channels")
            values.extend(_chromaticity(planes[1:], grid))
    reconstruction = None
    if keep_reconstruction:
        reconstruction = np.asarray(codes.reconstruct(atoms), dtype=np.float64) + means[:, None]
    return ScaleFeatures(grid, np.stack(values), residual_rms.reshape(shape), reconstruction)


def feature_reach(settings: DetectorSettings) -> int:
    """How far (working pixels) beyond a patch the pixels its features depend
    on lie, the colour features aside (their chromaticity is relative to the
    whole image's median patch): the line filters' half-width (or the
    Hessian's truncated Gaussian), the top-hats' closing and opening (a
    dilation and an erosion, each half the size), and the gradient."""
    lines = math.ceil(3 * settings.line_length) if settings.line_length > 0 else math.ceil(4 * _RIDGE_SIGMA)
    return max(lines, 2 * (_LINE_SIZE // 2), 1)


def _window_axis(
    positions: np.ndarray, start: int, stop: int, length: int, patch_size: int, stride: int, reach: int
) -> tuple[int, int, int, int]:
    """Along one axis: the grid lines ``[first, last)`` whose patches, grown by
    ``reach``, meet pixels ``[start, stop)``, and a crop ``[low, high)`` of the
    image whose own grid's lines fall on the image grid's, from line
    ``low // stride``, with those patches' reach inside it or cut by the
    image's own border."""
    first = int(np.searchsorted(positions + patch_size + reach, start, side="right"))
    last = int(np.searchsorted(positions - reach, stop, side="left"))
    low = max(0, (int(positions[first]) - reach) // stride * stride)
    lines = -(-(int(positions[last - 1]) + reach - low) // stride)
    high = min(length, low + lines * stride + patch_size)
    return first, last, low, high


def window_features(
    level: np.ndarray,
    changed: tuple[slice, slice],
    atoms: np.ndarray,
    patch_size: int,
    settings: DetectorSettings,
) -> tuple[slice, slice, np.ndarray]:
    """Raw features of the patches of a grey working image that a change of
    its pixels within ``changed`` (row and column slices) can alter,
    computed on a crop around them: equal to :func:`scale_features` of the
    whole image on those patches (to float rounding), at a fraction of the
    cost for a small change.

    Returns
    -------
    rows, cols : slice
        The patches' grid rows and columns.
    values : ndarray, shape (F, rows, cols)
    """
    grid = PatchGrid(level.shape, patch_size, settings.stride)
    reach = feature_reach(settings)
    row_first, row_last, top, bottom = _window_axis(
        grid.rows, changed[0].start, changed[0].stop, level.shape[0], patch_size, settings.stride, reach
    )
    col_first, col_last, left, right = _window_axis(
        grid.cols, changed[1].start, changed[1].stop, level.shape[1], patch_size, settings.stride, reach
    )
    values = scale_features(level[top:bottom, left:right], atoms, patch_size, settings).values
    row_base, col_base = top // settings.stride, left // settings.stride
    rows, cols = slice(row_first, row_last), slice(col_first, col_last)
    window = values[:, row_first - row_base : row_last - row_base, col_first - col_base : col_last - col_base]
    return rows, cols, window
