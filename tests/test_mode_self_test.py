"""The mode self-test of ``auto``: probed images are described and scored
again only near the probe, with the same result as scoring them whole."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage
from skimage.transform import resize

from spmcli.inspection.detector import DetectorSettings
from spmcli.inspection.features import (
    detector_planes,
    level_gain,
    scale_features,
    window_features,
    working_pyramid,
)
from spmcli.inspection.fitting import aligned_size, fit_detector
from spmcli.inspection.mode_self_test import (
    SELF_TEST_PROBES,
    lead_and_standard_error,
    mode_choice,
    probe_margin,
    self_test_scores,
)
from spmcli.inspection.probe_defects import PROBE_KINDS, draw_probe_defect
from spmcli.sparse.dictionary import dct_dictionary


def texture(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.2) / 0.2, 0, 1)


# Changed boxes (rows, columns): inside, at each border, a corner, the whole image.
CHANGES = [
    (slice(40, 46), slice(50, 53)),
    (slice(0, 5), slice(30, 60)),
    (slice(90, 103), slice(0, 4)),
    (slice(100, 103), slice(120, 131)),
    (slice(0, 103), slice(0, 131)),
]


@pytest.mark.parametrize("changed", CHANGES)
@pytest.mark.parametrize("line_length", [6.0, 0.0])
def test_window_features_are_the_whole_image_features_near_a_change(changed, line_length):
    settings = DetectorSettings(line_length=line_length, features=DetectorSettings().features[:-1])
    atoms = dct_dictionary(8, 32)
    clean = texture((103, 131))
    probed = clean.copy()
    probed[changed] = 1.0 - probed[changed]
    before = scale_features(clean, atoms, 8, settings).values
    after = scale_features(probed, atoms, 8, settings).values
    rows, cols, window = window_features(probed, changed, atoms, 8, settings)
    np.testing.assert_allclose(window, after[:, rows, cols], rtol=1e-5, atol=1e-5)
    # Outside the window nothing changed (to the FFTs' float32 rounding): its
    # reach covers every patch the change can alter.
    outside = np.ones(before.shape[1:], dtype=bool)
    outside[rows, cols] = False
    np.testing.assert_allclose(after[:, outside], before[:, outside], rtol=1e-5, atol=1e-5)
    assert outside.sum() > 0 or changed == CHANGES[-1]


def aligned_cells(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96].astype(float)
    layout = 0.55 + 0.1 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / 2000)
    layout[44:48, :] = 0.25
    return [np.clip(layout + 0.015 * rng.standard_normal(layout.shape), 0, 1) for _ in range(count)]


@pytest.fixture(scope="module")
def candidates():
    good, calibration = aligned_cells(1, 12), aligned_cells(2, 5)
    with pytest.warns(UserWarning, match="only 5 calibration images"):
        return [
            fit_detector(good, calibration, seed=0, n_atoms=32, settings=DetectorSettings(mode=mode))[1]
            for mode in ("pooled", "aligned")
        ]


@pytest.mark.parametrize("height", [96, 91], ids=["training size", "near size"])
def test_self_test_scores_match_whole_image_scores(candidates, height):
    # Near size: the aligned detector reads the features on its own grid, and
    # only the model's patches that read a changed patch are scored again.
    image = aligned_cells(3, 1)[0][:height]
    clean, probed = self_test_scores(candidates, image, 1, 5, seed=4)
    assert clean.shape == (2, 2) and probed.shape == (SELF_TEST_PROBES // 5, 2)
    for column, detector in enumerate(candidates):
        whole = detector.score(image)
        assert clean[:, column].tolist() == [whole.score, whole.peak]  # the calibration scores, exactly
        settings = detector.settings
        gain = level_gain(working_pyramid(detector_planes(image), settings, 8, gain=1.0)[0])
        for turn, probe in enumerate(range(1, SELF_TEST_PROBES, 5)):
            kind = PROBE_KINDS[(1 + turn) % len(PROBE_KINDS)]
            drawn = draw_probe_defect(image, kind, np.random.default_rng([4, probe]), 1)
            # Scored whole, divided by the clean image's level as the self-test does.
            levels = working_pyramid(detector_planes(drawn), settings, 8, gain=gain)
            features = [scale_features(level, detector.atoms, 8, settings) for level in levels]
            expected = detector.score_features(detector.model_features(features), image.shape).score
            assert probed[turn, column] == pytest.approx(expected, rel=1e-4)
            assert probed[turn, column] > clean[0, column]


def test_probe_margin_is_the_mean_log_ratio_to_the_calibrated_threshold():
    clean = np.linspace(1.0, 2.0, 20)
    probed = np.array([2.0, 8.0])
    threshold = np.quantile(clean, 0.95)
    assert probe_margin(clean, probed, 0.95) == pytest.approx(np.mean(np.log(probed / threshold)))
    # Fewer than 20 clean scores: the threshold a normal fit gives, as calibration does.
    few = clean[:5]
    normal = few.mean() + 1.6448536269514722 * few.std(ddof=1)
    assert probe_margin(few, probed, 0.95) == pytest.approx(np.mean(np.log(probed / normal)))
    # Scores of exactly 0 (a bank holding the very images) stay finite.
    assert np.isfinite(probe_margin(np.zeros(5), np.array([0.0, 1.0]), 0.95))


def test_colour_detectors_score_probed_images_whole():
    # Chromaticity is relative to the whole image's median patch, so a probe
    # can move every patch's colour a little: colour images are scored whole.
    tint = np.array([1.05, 0.85, 0.6])
    good, calibration, image = (
        [np.clip(cell[:, :, None] * tint, 0, 1) for cell in aligned_cells(seed, count)]
        for seed, count in ((5, 12), (6, 5), (7, 1))
    )
    with pytest.warns(UserWarning, match="only 5 calibration images"):
        detectors = [
            fit_detector(good, calibration, seed=0, n_atoms=32, settings=DetectorSettings(mode=mode))[1]
            for mode in ("pooled", "aligned")
        ]
    assert "colour" in detectors[0].settings.features
    clean, probed = self_test_scores(detectors, image[0], 0, 5, seed=2)
    for column, detector in enumerate(detectors):
        assert clean[:, column].tolist() == [detector.score(image[0]).score, detector.score(image[0]).peak]
        for turn, probe in enumerate(range(0, SELF_TEST_PROBES, 5)):
            kind = PROBE_KINDS[turn % len(PROBE_KINDS)]
            drawn = draw_probe_defect(image[0], kind, np.random.default_rng([2, probe]), 1)
            assert probed[turn, column] == detector.score(drawn).score


def test_near_sizes_compare_both_modes_on_features_computed_once():
    # Cells cut a few pixels taller or shorter: both modes are candidates, the
    # features of each good image are computed once, and the aligned one reads
    # them at the positions of the first image's grid. (Until stop 31 it
    # resized the good images, which smoothed the white grain these cells are
    # made of: they no longer looked like the calibration images, and the
    # self-test preferred pooled unless the blur was set to 1 by hand.)
    heights = [96, 96, 93, 99, 96, 94, 98, 96, 95, 97, 96, 92]
    good = [np.clip(cell[:height] if height <= 96 else np.pad(cell, ((0, height - 96), (0, 0)), mode="edge"), 0, 1)
            for cell, height in zip(aligned_cells(10, 12), heights, strict=True)]  # fmt: skip
    calls = {}

    def record(stage, done, total):
        calls[stage] = calls.get(stage, 0) + 1

    dictionary, detector = fit_detector(good, aligned_cells(11, 20), seed=0, n_atoms=32, callback=record)
    assert dictionary.metadata["detector"]["mode_self_test"]["n_probes"] == SELF_TEST_PROBES
    assert detector.mode == "aligned" and detector.image_shape == (96, 96)
    assert calls["features"] == len(good)
    # An image of another near size is scored on the model's grid, not resized.
    short = good[11]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = detector.score(short, with_map=True)
    assert result.anomaly_map.shape == short.shape
    native = detector._features(detector._levels(short), with_quality=False)
    assert native[0].grid.image_shape != detector.model_grids()[0].image_shape
    assert native[0].values.shape[1:] != detector.scales[0].positions.mean.shape[1:]
    assert result.score == detector.score_features(detector.model_features(native), short.shape).score


def test_the_training_size_is_the_good_image_closest_to_the_median_size():
    assert aligned_size([(87, 96), (96, 96), (96, 96), (98, 96), (95, 96)]) == (96, 96)
    assert aligned_size([(300, 300)] * 4) == (300, 300)
    # Among equally close sizes, the first.
    assert aligned_size([(100, 50), (90, 50), (110, 50)]) == (100, 50)
    assert aligned_size([(90, 50), (110, 50)]) == (90, 50)


def test_an_odd_first_image_does_not_set_the_positions():
    # The first good image is 9 rows short: the others are read on the
    # median size's grid as they are, not resized to the odd one's size.
    cells = aligned_cells(10, 12)
    good = [cells[0][:87], *cells[1:]]
    calls = {}

    def record(stage, done, total):
        calls[stage] = calls.get(stage, 0) + 1

    with pytest.warns(UserWarning, match="only 8 calibration images"):
        _, detector = fit_detector(
            good, aligned_cells(11, 8), settings=DetectorSettings(mode="aligned"), seed=0, callback=record
        )
    assert detector.image_shape == (96, 96)
    assert calls["features"] == len(good)


def test_auto_describes_an_image_far_off_the_training_size_again_resized_for_the_aligned_candidate():
    # Sides within 10% of the median (both modes compared), but the first
    # image is 11% off the training size (101 rows, the first closest to the
    # median of 100): the pooled candidate sees it as it is, the aligned one
    # resized, so its features are computed twice; the others once.
    heights = [90, 101, 99, 101, 99, 101, 99, 101, 99, 101, 99, 101]
    good = [np.pad(cell, ((0, max(0, height - 96)), (0, 0)), mode="edge")[:height]
            for cell, height in zip(aligned_cells(1, 12), heights, strict=True)]  # fmt: skip
    calls = {}

    def record(stage, done, total):
        calls[stage] = calls.get(stage, 0) + 1

    dictionary, _ = fit_detector(good, aligned_cells(2, 20), seed=0, n_atoms=32, callback=record)
    assert dictionary.metadata["detector"]["mode_self_test"] is not None
    assert calls["features"] == len(good) + 1


def test_an_aligned_detector_resizes_images_far_off_its_size_and_says_so():
    good = aligned_cells(10, 12)
    with pytest.warns(UserWarning, match="only 8 calibration images"):
        _, detector = fit_detector(good, aligned_cells(11, 8), settings=DetectorSettings(mode="aligned"), seed=0)
    wide = np.repeat(aligned_cells(12, 1)[0], 2, axis=1)
    with pytest.warns(UserWarning, match=r"is 192x96 pixels, 100% off the aligned detector's 96x96: it was resized"):
        result = detector.score(wide)
    resized = resize(wide, (96, 96), order=1, anti_aliasing=True, mode="edge")
    assert result.score == detector.score_features(detector.image_features(resized), wide.shape).score


def _self_test(probe_ratios, seed=0):
    """20 tested images, one probe each: clean scores alike in both modes,
    the pooled probe scores 2-3, the aligned ones ``probe_ratios`` times them."""
    rng = np.random.default_rng(seed)
    tested = []
    for ratio in probe_ratios:
        clean = np.array([[1.0, 1.0], [2.0, 2.5]]) * rng.uniform(0.9, 1.1)
        pooled = rng.uniform(2.0, 3.0)
        tested.append((clean, np.array([[pooled, pooled * ratio]])))
    return tested


MODES = [SimpleNamespace(mode="pooled"), SimpleNamespace(mode="aligned")]


def test_aligned_is_chosen_when_it_leads_by_more_than_a_standard_error():
    chosen, reason, record, known = mode_choice(MODES, _self_test([1.5] * 10 + [1.7] * 10), 0.95)
    assert chosen == 1 and "so the simpler" not in reason
    lead = record["lead"]
    assert lead["mode"] == "aligned" and lead["log_lead"] > lead["standard_error"] > 0
    assert reason.startswith("20 probe defects drawn on 20 calibration images score ")
    assert "x the threshold aligned against " in reason
    assert [peak for _, peak in known] == [clean[1, 1] for clean, _ in _self_test([1.5] * 10 + [1.7] * 10)]


def test_a_lead_within_one_standard_error_keeps_the_simpler_pooled_mode():
    # Aligned ahead on average (geometric mean 1.1x) but probe by probe either way.
    ratios = [3.0, 0.4] * 10
    chosen, reason, record, known = mode_choice(MODES, _self_test(ratios), 0.95)
    lead = record["lead"]
    assert 0 < lead["log_lead"] < lead["standard_error"]
    assert record["probe_over_threshold"]["aligned"] > record["probe_over_threshold"]["pooled"]
    assert chosen == 0
    assert reason.endswith(
        f"; aligned's lead ({lead['log_lead']:.2f} in log units) is within one standard error of the probes "
        f"({lead['standard_error']:.2f}), so the simpler pooled mode is kept"
    )
    assert [peak for _, peak in known] == [clean[1, 0] for clean, _ in _self_test(ratios)]
    # The lead and its error are those of the paired log differences.
    probed = np.concatenate([probes for _, probes in _self_test(ratios)])
    differences = np.log(probed[:, 1]) - np.log(probed[:, 0])
    margins = [probe_margin(np.stack([c for c, _ in _self_test(ratios)])[:, 0, k], probed[:, k], 0.95) for k in (0, 1)]
    assert lead_and_standard_error(probed, margins, 0, 1) == pytest.approx(
        (margins[1] - margins[0], np.std(differences, ddof=1) / np.sqrt(20))
    )


def test_pooled_is_kept_when_it_leads():
    chosen, reason, record, _ = mode_choice(MODES, _self_test([0.5] * 20), 0.95)
    assert chosen == 0 and "x the threshold pooled against " in reason and "so the simpler" not in reason
    assert record["lead"]["mode"] == "aligned" and record["lead"]["log_lead"] < 0
