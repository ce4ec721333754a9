"""Patch features of an image read on another image size's patch grid: how
an aligned detector compares an image of nearly its training size (within
:data:`~spmcli.inspection.features.NEAR_SIZE` of it) with the good images,
position by position. An image further off is resized to the training size
first (:func:`resize_for_alignment`): there the scale of its details differs
too.

Positions correspond in proportion: the patch centred at a fraction of the
way down and across the model's working image is compared with the image's
features at the same fractions, interpolated linearly between the four
nearest patches of the image's own grid. The features are those of the
image as it is, not of the image resized: they are computed once whichever
mode reads them, and resizing would smooth the pixels (interpolation) the
good images' patches were not smoothed by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sparse.patches import PatchGrid
from .features import NEAR_SIZE, ScaleFeatures, size_difference
from .settings import DetectorSettings

__all__ = [
    "AxisResampling",
    "model_grids",
    "resample_features",
    "resample_values",
    "resize_for_alignment",
    "touched_window",
    "working_shapes",
]


def resize_for_alignment(shape: tuple[int, ...], model_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The size an aligned detector of training size ``model_shape`` resizes
    an image of ``shape`` to before describing it: None (as it is) within
    :data:`~spmcli.inspection.features.NEAR_SIZE` of it, its own size beyond."""
    if size_difference(shape, model_shape) <= NEAR_SIZE:
        return None
    return int(model_shape[0]), int(model_shape[1])


def working_shapes(image_shape: tuple[int, int], settings: DetectorSettings) -> list[tuple[int, int]]:
    """The working images' sizes (finest first) of an image of ``image_shape``,
    as :func:`~spmcli.inspection.features.working_pyramid` makes them: reduced
    by ``downscale``, then halved per scale, each cropped to a multiple of its
    factor first."""
    height, width = int(image_shape[0]), int(image_shape[1])
    factor = settings.downscale or 1
    height, width = height // factor, width // factor
    shapes = [(height, width)]
    for _ in range(1, settings.n_scales):
        height, width = height // 2, width // 2
        shapes.append((height, width))
    return shapes


def model_grids(image_shape: tuple[int, int], patch_size: int, settings: DetectorSettings) -> list[PatchGrid]:
    """The patch grids of every working scale of an image of ``image_shape``."""
    return [PatchGrid(shape, patch_size, settings.stride) for shape in working_shapes(image_shape, settings)]


@dataclass(frozen=True)
class AxisResampling:
    """Linear interpolation along one grid axis: output line ``j`` is
    ``(1 - weight[j]) * line low[j] + weight[j] * line high[j]`` of the input."""

    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray

    @classmethod
    def between(
        cls, source: np.ndarray, source_length: int, target: np.ndarray, target_length: int, patch_size: int
    ) -> AxisResampling:
        """From patch starts ``source`` on an axis of ``source_length`` pixels
        to patch starts ``target`` on one of ``target_length``: each target
        patch centre is taken to the same fraction of the source axis."""
        centre = (patch_size - 1) / 2
        # Pixel centres correspond in proportion (as in scipy.ndimage's grid mode).
        position = (target + centre + 0.5) * (source_length / target_length) - 0.5
        index = np.interp(position, source + centre, np.arange(source.size, dtype=np.float64))
        low = np.floor(index).astype(np.intp)
        high = np.minimum(low + 1, source.size - 1)
        return cls(low, high, index - low)

    def apply(self, values: np.ndarray, axis: int) -> np.ndarray:
        low = np.take(values, self.low, axis=axis)
        high = np.take(values, self.high, axis=axis)
        shape = [1] * values.ndim
        shape[axis] = self.weight.size
        weight = self.weight.reshape(shape)
        return low * (1 - weight) + high * weight

    def touched(self, lines: slice) -> slice | None:
        """The output lines that read any input line of ``lines`` (None: none do)."""
        inside = ((self.low >= lines.start) & (self.low < lines.stop)) | (
            (self.high >= lines.start) & (self.high < lines.stop) & (self.weight > 0)
        )
        hits = np.flatnonzero(inside)
        if hits.size == 0:
            return None
        return slice(int(hits[0]), int(hits[-1]) + 1)


def _axes(source: PatchGrid, target: PatchGrid) -> tuple[AxisResampling, AxisResampling]:
    size = source.patch_size
    rows = AxisResampling.between(source.rows, source.image_shape[0], target.rows, target.image_shape[0], size)
    cols = AxisResampling.between(source.cols, source.image_shape[1], target.cols, target.image_shape[1], size)
    return rows, cols


def resample_values(values: np.ndarray, source: PatchGrid, target: PatchGrid) -> np.ndarray:
    """Feature maps ``(F, rows, cols)`` on grid ``source`` read on grid ``target``."""
    rows, cols = _axes(source, target)
    return cols.apply(rows.apply(values, axis=1), axis=2)


def resample_features(features: ScaleFeatures, target: PatchGrid) -> ScaleFeatures:
    """An image's features of one scale read on another size's grid (the same
    object when the sizes are equal). The coded patches are not carried over."""
    if tuple(features.grid.image_shape[:2]) == tuple(target.image_shape[:2]):
        return features
    values = resample_values(features.values, features.grid, target)
    residual = resample_values(features.residual_rms[None], features.grid, target)[0]
    return ScaleFeatures(target, values, residual)


def touched_window(source: PatchGrid, target: PatchGrid, rows: slice, cols: slice) -> tuple[slice, slice] | None:
    """The patches of grid ``target`` whose resampled features read any of the
    patches ``rows`` x ``cols`` of grid ``source`` (None: none do)."""
    row_axis, col_axis = _axes(source, target)
    touched_rows, touched_cols = row_axis.touched(rows), col_axis.touched(cols)
    if touched_rows is None or touched_cols is None:
        return None
    return touched_rows, touched_cols
