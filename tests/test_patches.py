import numpy as np
import pytest

from spmcli.sparse.patches import (
    PatchAverager,
    PatchGrid,
    add_patch_means,
    grid_axis,
    remove_patch_means,
    sample_patches,
)


@pytest.mark.parametrize("shape", [(17, 23), (16, 16, 3), (9, 40)])
@pytest.mark.parametrize("stride", [1, 2, 3, 5, 8])
def test_patches_round_trip_exactly(shape, stride):
    image = np.random.default_rng(0).random(shape)
    grid = PatchGrid(image.shape, patch_size=8, stride=stride)
    averager = PatchAverager(grid)
    for band in grid.bands(max_patches=7):
        averager.add(band, grid.extract(image, band))
    np.testing.assert_allclose(averager.result(), image, rtol=0, atol=1e-14)


def test_grid_always_covers_last_row_and_column():
    assert grid_axis(20, 8, 5).tolist() == [0, 5, 10, 12]
    assert grid_axis(8, 8, 3).tolist() == [0]
    grid = PatchGrid((20, 13), 8, 5)
    tops, lefts = grid.positions()
    assert tops.max() + 8 == 20 and lefts.max() + 8 == 13


def test_extract_layout_matches_atom_convention():
    image = np.arange(5 * 6 * 3, dtype=float).reshape(5, 6, 3)
    grid = PatchGrid(image.shape, patch_size=2, stride=1)
    patches = grid.extract(image)
    tops, lefts = grid.positions()
    index = 7
    expected = image[tops[index] : tops[index] + 2, lefts[index] : lefts[index] + 2].reshape(-1)
    np.testing.assert_array_equal(patches[index], expected)


def test_bands_split_rows_and_bound_size():
    grid = PatchGrid((100, 50), 8, 1)
    bands = list(grid.bands(max_patches=200))
    assert sum(band.stop - band.start for band in bands) == grid.rows.size
    assert all((band.stop - band.start) * grid.cols.size <= 200 for band in bands)


def test_weighted_average_and_fallback():
    image = np.ones((10, 10))
    grid = PatchGrid(image.shape, patch_size=3, stride=5)  # stride > patch: gaps
    averager = PatchAverager(grid)
    patches = grid.extract(image)
    averager.add(slice(None), patches * 2, weights=np.full(grid.n_patches, 0.5))
    result = averager.result(fallback=np.full((10, 10), 7.0))
    assert set(np.unique(result)) == {2.0, 7.0}


def test_image_smaller_than_patch_is_refused():
    with pytest.raises(ValueError, match="smaller than the 8 x 8 patch"):
        PatchGrid((5, 30), patch_size=8)


def test_mean_removal_round_trips():
    patches = np.random.default_rng(1).random((10, 4 * 4 * 3))
    centred, means = remove_patch_means(patches, 3)
    assert means.shape == (10, 3)
    np.testing.assert_allclose(centred.reshape(10, -1, 3).mean(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(add_patch_means(centred, means), patches)


def test_sample_patches_is_seeded_and_distinct():
    image = np.random.default_rng(2).random((30, 30))
    first = sample_patches(image, 8, 50, np.random.default_rng(5))
    second = sample_patches(image, 8, 50, np.random.default_rng(5))
    np.testing.assert_array_equal(first, second)
    assert np.unique(first, axis=0).shape[0] == 50
    assert sample_patches(image, 8, 10_000, np.random.default_rng(0)).shape == (23 * 23, 64)
