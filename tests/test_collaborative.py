"""Tests of collaborative filtering: block matching, transforms, the two BM3D steps and their parameters."""

from __future__ import annotations

import numpy as np
import pytest

from spmcli.metrics import psnr
from spmcli.restoration.block_matching import block_match, group_sizes, match_references, nearest_first
from spmcli.restoration.collaborative import CollaborativeStep, collaborative_step
from spmcli.restoration.collaborative_denoising import collaborative_denoise, wiener_passes
from spmcli.restoration.hard_thresholding import collaborative_hard_thresholding, hard_distance_threshold
from spmcli.restoration.patch_transforms import haar_matrix, learn_sparsifying_transform, patch_transform
from spmcli.restoration.wiener import DISTANCE_THRESHOLD, collaborative_wiener, learned_transform


def blocks_and_stripes(size: int = 96) -> np.ndarray:
    """Flat squares (left half) and a diagonal stripe texture (right half): a
    known clean image with large flat areas and repeated structure."""
    y, x = np.mgrid[:size, :size].astype(float)
    image = np.where((y // 24 + x // 24) % 2 == 0, 0.3, 0.7)
    stripes = 0.5 + 0.25 * np.sin(2 * np.pi * (x + y) / 8)
    image[:, size // 2 :] = stripes[:, size // 2 :]
    return image


def fine_detail(size: int) -> np.ndarray:
    """Stripes of a 5-pixel period turning slowly across the image, beside
    flat squares: detail finer than an 8x8 patch."""
    y, x = np.mgrid[:size, :size].astype(float)
    angle = np.pi * (0.1 + 0.6 * y / size)
    stripes = 0.5 + 0.2 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / 5)
    squares = np.where((y // 16 + x // 16) % 2 == 0, 0.35, 0.65)
    return np.where(x < size // 3, squares, stripes)


@pytest.fixture(scope="module")
def noisy_case():
    clean = blocks_and_stripes()
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    pilot = collaborative_hard_thresholding(noisy, 0.1)
    return clean, noisy, pilot


def test_block_match_finds_exact_twins_first():
    rng = np.random.default_rng(0)
    tile = rng.uniform(0, 1, (4, 4))
    image = np.tile(tile, (10, 10)).astype(np.float32)
    features = np.lib.stride_tricks.sliding_window_view(image, (4, 4)).reshape(37, 37, 16).copy()
    rows, cols, distances = block_match(features, np.array([8]), np.array([12]), 8, 8)
    assert (rows[0, 0], cols[0, 0]) == (8, 12)  # the reference itself first
    # Every other candidate at a distance of 0 is a shift by a multiple of the period.
    exact = distances[0] < 1e-4
    assert exact.sum() == 8
    assert np.all((rows[0][exact] - 8) % 4 == 0) and np.all((cols[0][exact] - 12) % 4 == 0)
    # Scattered references give the same answer as the grid.
    scattered = match_references(features, np.array([8]), np.array([12]), 8, 8, 24)
    np.testing.assert_array_equal(scattered[0], rows)


@pytest.mark.parametrize(
    "n_candidates, k, ties",
    [(1681, 32, "zeros"), (3600, 16, "zeros"), (1681, 32, "rounded"), (1681, 32, "none"), (40, 32, "zeros"),
     (32, 32, "zeros"), (7, 1, "none")],
)  # fmt: skip
def test_nearest_first_matches_a_full_sort(n_candidates, k, ties):
    rng = np.random.default_rng(n_candidates)
    distances = rng.gamma(2.0, 1.0, (64, n_candidates)).astype(np.float32)
    if ties != "none":
        # Ties as on flat areas: rounded values, many exact zeros (identical
        # patches), rounding below 0.
        distances = np.round(distances, 1)
    if ties == "zeros":
        distances[:, ::5] = 0.0
        distances[:3, 1::7] = -1e-6
    references = rng.integers(0, n_candidates, 64)
    expected_values = distances.copy()
    expected_values[np.arange(64), references] = -1.0
    expected_values = np.maximum(expected_values, 0.0)
    # Reference first, then by distance, then by column.
    order_key = np.where(np.arange(n_candidates) == references[:, None], -1.0, expected_values)
    expected = np.lexsort((np.broadcast_to(np.arange(n_candidates), order_key.shape), order_key), axis=1)[:, :k]
    columns, values = nearest_first(distances.copy(), k, references)
    np.testing.assert_array_equal(columns, expected)
    np.testing.assert_array_equal(columns[:, 0], references)
    np.testing.assert_array_equal(values, np.take_along_axis(expected_values, expected, axis=1))
    assert values.dtype == np.float32 and np.all(values >= 0)


def test_group_sizes_are_powers_of_two_within_the_threshold():
    distances = np.array([[0, 1, 2, 3, 9, 9], [0, 9, 9, 9, 9, 9], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(group_sizes(distances, 3.0, 4), [4, 1, 4])


def test_transforms_are_invertible_with_unit_norm_rows():
    for name in ("dct", "bior1.5"):
        forward, inverse = patch_transform(name, 8)
        np.testing.assert_allclose(np.linalg.norm(forward, axis=1), 1.0)
        np.testing.assert_allclose(inverse @ forward, np.eye(64), atol=1e-10)
    haar = haar_matrix(8)
    np.testing.assert_allclose(haar @ haar.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(haar[0], np.full(8, 1 / np.sqrt(8)))


def test_learned_transform_is_orthonormal_and_sparser_than_the_dct():
    # Patches of stripes at one oblique angle: not sparse in the DCT, sparse in an adapted basis.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:8, :8]
    phases = rng.uniform(0, 2 * np.pi, 3000)
    amplitudes = rng.uniform(0.5, 1.0, 3000)
    patches = amplitudes[:, None] * np.sin(2 * np.pi * (x + 0.37 * y).ravel() / 5.3 + phases[:, None])
    learned = learn_sparsifying_transform(patches, 0.1)
    np.testing.assert_allclose(learned @ learned.T, np.eye(64), atol=1e-10)
    np.testing.assert_allclose(learned[0], np.full(64, 1 / 8))

    def significant(transform):
        return np.count_nonzero(np.abs(patches @ transform.T) > 0.1) / len(patches)

    assert significant(learned) < 0.9 * significant(patch_transform("dct", 8)[0])


def test_hard_distance_threshold_grows_with_the_noise():
    assert hard_distance_threshold(50 / 255) - hard_distance_threshold(25 / 255) == pytest.approx(
        2 * ((50 / 255) ** 2 - (25 / 255) ** 2)
    )


def test_colour_grouping_thresholds_follow_the_luminance_scale():
    # RGB is matched on the orthonormal luminance, sqrt(3) times a grey image's
    # level: the structural tolerance triples, the noise's share does not change.
    sigma = 25 / 255
    grey, rgb = hard_distance_threshold(sigma), hard_distance_threshold(sigma, n_channels=3)
    assert rgb - 2 * sigma**2 == pytest.approx(3 * (grey - 2 * sigma**2))
    rng = np.random.default_rng(0)
    clean = np.repeat(np.kron(rng.uniform(0.2, 0.8, (5, 5)), np.ones((8, 8)))[:, :, None], 3, axis=2)
    noisy = clean + rng.normal(0, sigma, clean.shape)
    settings = collaborative_denoise(noisy, sigma).settings
    assert settings["hard_distance_threshold"] == pytest.approx(rgb)
    assert settings["wiener_distance_threshold"] == pytest.approx(3 * 400 / 255**2)
    assert collaborative_denoise(noisy[:, :, 0], sigma).settings["wiener_distance_threshold"] == pytest.approx(
        400 / 255**2
    )


@pytest.mark.parametrize("noise_factor", [0.5, 1.0])
def test_wiener_step_improves_on_its_pilot_and_the_learned_transform_helps(noisy_case, noise_factor):
    clean, noisy, pilot = noisy_case
    learned = collaborative_wiener(noisy, pilot, 0.1, noise_factor=noise_factor)
    dct = collaborative_wiener(noisy, pilot, 0.1, noise_factor=noise_factor, transform="dct")
    assert psnr(clean, pilot) > psnr(clean, noisy) + 15.0
    assert psnr(clean, dct) > psnr(clean, pilot) + 0.1
    # The oblique stripes are sparser in a basis learned from the pilot.
    assert psnr(clean, learned) > psnr(clean, dct) + 0.1


@pytest.mark.parametrize("level", [0.05, 0.5])
@pytest.mark.parametrize("noise_factor", [0.5, 1.0])
@pytest.mark.parametrize("patch_size", [8, (8, 6)])
def test_flat_areas_stay_unbiased(level, noise_factor, patch_size):
    # A flat image: the output's mean is the noisy image's (the group mean
    # passes unshrunk), even near black, and the noise is removed.
    clean = np.full((64, 64), level)
    noisy = clean + np.random.default_rng(3).normal(0, 0.05, clean.shape)
    pilot = collaborative_hard_thresholding(noisy, 0.05)
    filtered = collaborative_wiener(noisy, pilot, 0.05, noise_factor=noise_factor, patch_size=patch_size)
    assert abs(filtered.mean() - noisy.mean()) < 0.001
    assert filtered.std() < 0.05 / 10


def test_smaller_patches_join_the_wiener_step_at_low_noise():
    assert wiener_passes(8, 32, 19, True) == ((8, 6), (32, 16), (19, 8))
    assert wiener_passes(8, 32, 19, False) == ((8,), (32,), (19,))
    assert wiener_passes(16, 16, 5, True) == ((16, 12), (16, 8), (5, 5))
    clean = fine_detail(64)
    for sigma, sizes in ((15 / 255, [8, 6]), (20 / 255, [8, 6]), (21 / 255, [8]), (0.1, [8])):
        noisy = clean + np.random.default_rng(5).normal(0, sigma, clean.shape)
        settings = collaborative_denoise(noisy, sigma).settings
        assert settings["wiener_patch_sizes"] == sizes
        assert settings["wiener_max_groups"] == [32, 16][: len(sizes)]
        assert settings["wiener_search_radii"] == [19, 8][: len(sizes)]
    assert collaborative_denoise(noisy, 0.1, small_patches=True).settings["wiener_patch_sizes"] == [8, 6]
    assert collaborative_denoise(noisy, 0.05, small_patches=False).settings["wiener_patch_sizes"] == [8]


def test_one_patch_size_in_a_sequence_is_the_single_size(noisy_case):
    _, noisy, pilot = noisy_case
    np.testing.assert_array_equal(
        collaborative_wiener(noisy, pilot, 0.1),
        collaborative_wiener(noisy, pilot, 0.1, patch_size=(8,), max_group=(32,), search_radius=[19]),
    )


def test_patch_sizes_are_aggregated_with_per_pixel_weights():
    # Every filtered patch of both passes goes into one weighted average; a
    # patch's weight (its group's) is scaled by its number of pixels.
    clean = fine_detail(64)
    sigma = 15 / 255
    noisy = clean + np.random.default_rng(3).normal(0, sigma, clean.shape)
    pilot = collaborative_hard_thresholding(noisy, sigma)
    sums = []
    for size, group, radius in ((8, 32, 19), (6, 16, 8)):
        basis = learned_transform(pilot, size, sigma)
        step = CollaborativeStep("wiener", size, group, radius, 3, DISTANCE_THRESHOLD, 0.5, "dct", basis)
        numerator, denominator = collaborative_step(
            noisy[:, :, None].astype(np.float32), sigma, pilot[:, :, None], step, return_sums=True
        )
        sums.append((numerator[:, :, 0] * size**2, denominator[:, :, 0] * size**2))
    expected = (sums[0][0] + sums[1][0]) / (sums[0][1] + sums[1][1])
    both = collaborative_wiener(noisy, pilot, sigma, patch_size=(8, 6), max_group=(32, 16), search_radius=(19, 8))
    np.testing.assert_allclose(both, expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        collaborative_wiener(noisy, pilot, sigma, patch_size=())
    with pytest.raises(ValueError, match="2 values for 3 patch sizes"):
        collaborative_wiener(noisy, pilot, sigma, patch_size=(8, 6, 4), max_group=(32, 16))
    with pytest.raises(ValueError, match="smaller than"):
        collaborative_wiener(noisy[:5, :5], pilot[:5, :5], sigma, patch_size=(4, 6))


def test_smaller_patches_follow_fine_detail_at_low_noise():
    # Stripes finer than an 8x8 patch can hold alike: at low noise, the 6x6
    # pass aggregated with the 8x8 one rebuilds them better than 8x8 alone.
    clean = fine_detail(128)
    sigma = 15 / 255
    gains = []
    for seed in (0, 1):
        noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
        pilot = collaborative_hard_thresholding(noisy, sigma)
        eight = collaborative_wiener(noisy, pilot, sigma)
        both = collaborative_wiener(noisy, pilot, sigma, patch_size=(8, 6), max_group=(32, 16), search_radius=(19, 8))
        gains.append(psnr(clean, both) - psnr(clean, eight))
    assert np.mean(gains) > 0.01


def test_collaborative_denoise_reports_its_settings_and_pilot(noisy_case):
    clean, noisy, _ = noisy_case
    result = collaborative_denoise(noisy, 0.1)
    assert result.image.shape == clean.shape and result.pilot.shape == clean.shape
    assert psnr(clean, result.image) > psnr(clean, result.pilot)
    assert result.settings["method"] == "collaborative" and result.settings["noise_factor"] == 0.5


def test_collaborative_denoise_colour_keeps_shape_and_helps():
    rng = np.random.default_rng(1)
    grey = blocks_and_stripes(64)
    clean = np.stack([grey, 1 - grey, np.full_like(grey, 0.4)], axis=2)
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    result = collaborative_denoise(noisy, 0.1)
    assert result.image.shape == clean.shape
    assert psnr(clean, result.image) > psnr(clean, noisy) + 6.0


def test_collaborative_denoise_is_deterministic():
    clean = blocks_and_stripes(48)
    noisy = clean + np.random.default_rng(2).normal(0, 0.1, clean.shape)
    np.testing.assert_array_equal(collaborative_denoise(noisy, 0.1).image, collaborative_denoise(noisy, 0.1).image)


def test_bad_parameters_are_refused():
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="power of two"):
        collaborative_denoise(image, 0.1, max_group=12)
    with pytest.raises(ValueError, match=r"0\.\.1 .*scale|scale"):
        collaborative_denoise(image, 25.0)
    with pytest.raises(ValueError, match="transform"):
        collaborative_wiener(image, image, 0.1, transform="wavelet")
    with pytest.raises(ValueError, match="smaller than"):
        collaborative_hard_thresholding(np.zeros((6, 40)), 0.1)
    with pytest.raises(ValueError, match="n_threads"):
        collaborative_denoise(image, 0.1, n_threads=0)


@pytest.mark.parametrize("colour", [False, True])
def test_threads_change_nothing_but_the_time(colour):
    rng = np.random.default_rng(3)
    grey = blocks_and_stripes(80)
    clean = np.stack([grey, 1 - grey, np.full_like(grey, 0.4)], axis=2) if colour else grey
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    one = collaborative_denoise(noisy, 0.1, n_threads=1)
    for n_threads in (2, 3):
        other = collaborative_denoise(noisy, 0.1, n_threads=n_threads)
        np.testing.assert_array_equal(one.pilot, other.pilot)
        np.testing.assert_array_equal(one.image, other.image)


def test_threads_over_several_blocks_give_the_same_sums():
    clean = blocks_and_stripes(96)
    noisy = clean + np.random.default_rng(4).normal(0, 0.1, clean.shape)
    planes = noisy[:, :, None]
    step = CollaborativeStep("hard", 8, 16, 6, 3, hard_distance_threshold(0.1), 3.0, "bior1.5")
    # A budget of 250,000 values makes blocks of 8 x 8 references: 4 x 4 blocks here.
    blocks = [collaborative_step(planes, 0.1, None, step, block_values=250_000, n_threads=n) for n in (1, 2)]
    np.testing.assert_array_equal(blocks[0], blocks[1])
    # Other blocks flip only near-ties of the distances (see test_wiener).
    whole = collaborative_step(planes, 0.1, None, step, n_threads=2)
    assert np.mean(np.abs(blocks[0] - whole)) < 5e-4


@pytest.mark.parametrize("sigma", [0.1, 10 / 255])
def test_progress_counts_every_reference_once_with_threads(noisy_case, sigma):
    # At low noise the Wiener step's two patch sizes report as one stage.
    clean = noisy_case[0]
    noisy = clean + np.random.default_rng(7).normal(0, sigma, clean.shape)
    calls = []
    collaborative_denoise(noisy, sigma, n_threads=2, callback=lambda *call: calls.append(call))
    for stage in ("hard thresholding", "wiener"):
        done = [call[1] for call in calls if call[0] == stage]
        total = {call[2] for call in calls if call[0] == stage}
        assert done == sorted(done) and len(total) == 1 and done[-1] == total.pop()
