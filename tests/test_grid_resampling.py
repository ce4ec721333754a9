"""Reading an image's patch features on another size's grid (aligned mode)."""

from __future__ import annotations

import numpy as np
import pytest

from spmcli.inspection.detector import DetectorSettings
from spmcli.inspection.features import ScaleFeatures, working_pyramid
from spmcli.inspection.grid_resampling import (
    model_grids,
    resample_features,
    resample_values,
    resize_for_alignment,
    touched_window,
    working_shapes,
)
from spmcli.sparse.patches import PatchGrid


@pytest.mark.parametrize(
    ("shape", "downscale", "n_scales"), [((1257, 500), 2, 2), ((301, 299), 1, 3), ((97, 45), 3, 1)]
)
def test_working_shapes_are_those_of_the_working_pyramid(shape, downscale, n_scales):
    settings = DetectorSettings(downscale=downscale, n_scales=n_scales, blur_sigma=0.5)
    image = np.random.default_rng(0).uniform(0.2, 0.8, shape)
    levels = working_pyramid(image, settings, 8)
    assert working_shapes(shape, settings) == [level.shape for level in levels]
    assert [grid.image_shape for grid in model_grids(shape, 8, settings)] == [level.shape for level in levels]


def _centre_fraction(grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """Each patch centre's position as a fraction of the image (pixel-centre convention)."""
    centre = (grid.patch_size - 1) / 2
    rows = (grid.rows + centre + 0.5) / grid.image_shape[0]
    cols = (grid.cols + centre + 0.5) / grid.image_shape[1]
    return rows, cols


def test_positions_correspond_in_proportion():
    # A feature that is a linear function of where a patch sits in the image
    # is read unchanged on another size's grid, away from the last lines
    # (where the source grid's last patch is clamped to the border).
    source, target = PatchGrid((120, 90), 8, 4), PatchGrid((112, 96), 8, 4)
    rows, cols = _centre_fraction(source)
    values = np.stack([np.broadcast_to(rows[:, None], (rows.size, cols.size)), 3 * cols[None, :] + rows[:, None]])
    read = resample_values(values, source, target)
    target_rows, target_cols = _centre_fraction(target)
    assert read.shape == (2, target.rows.size, target.cols.size)
    inner = (slice(1, -2), slice(1, -2))
    np.testing.assert_allclose(read[0][inner], np.broadcast_to(target_rows[:, None], read[0].shape)[inner], atol=1e-12)
    expected = 3 * target_cols[None, :] + target_rows[:, None]
    np.testing.assert_allclose(read[1][inner], expected[inner], atol=1e-12)


def test_the_same_size_is_read_as_it_is():
    grid = PatchGrid((64, 48), 8, 4)
    features = ScaleFeatures(grid, np.random.default_rng(1).normal(size=(3, 15, 11)), np.ones((15, 11)))
    assert resample_features(features, PatchGrid((64, 48), 8, 4)) is features
    np.testing.assert_array_equal(resample_values(features.values, grid, PatchGrid((64, 48), 8, 4)), features.values)


def test_the_touched_window_holds_every_patch_that_reads_a_changed_one():
    source, target = PatchGrid((100, 80), 8, 4), PatchGrid((104, 77), 8, 4)
    rng = np.random.default_rng(2)
    values = rng.normal(size=(2, source.rows.size, source.cols.size))
    rows, cols = slice(7, 10), slice(3, 5)
    changed = values.copy()
    changed[:, rows, cols] += rng.normal(size=(2, 3, 2)) + 5
    differs = np.any(resample_values(changed, source, target) != resample_values(values, source, target), axis=0)
    window = touched_window(source, target, rows, cols)
    assert window is not None
    marked = np.zeros_like(differs)
    marked[window] = True
    assert np.array_equal(marked, differs)


def test_only_images_more_than_near_size_off_are_resized():
    assert resize_for_alignment((1245, 500), (1257, 500)) is None
    assert resize_for_alignment((300, 300), (300, 300)) is None
    assert resize_for_alignment((96, 192), (96, 96)) == (96, 96)
    assert resize_for_alignment((80, 96), (96, 96)) == (96, 96)
