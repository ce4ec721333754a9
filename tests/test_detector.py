"""The defect detector's library API on synthetic images with known answers:
learning from mixed sizes and colours, each kind of defect found where it was
drawn and explained, the mode chosen and recorded, calibration rules,
persistence and the map_function contract."""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from spmcli.inspection.calibration import image_score
from spmcli.inspection.density import RARE_CANDIDATES, Expert, fit_expert, group_folds, thin_bank
from spmcli.inspection.detector import (
    SPREAD_OUT,
    Detector,
    DetectorSettings,
    NoDetectorError,
    _average_patches,
    _resize_linear,
)
from spmcli.inspection.features import MAX_BLUR, blur_for_noise, line_responses, working_noise
from spmcli.inspection.fitting import _mode_candidates, fit_detector
from spmcli.inspection.overlay import CONTOUR_COLOUR, anomaly_overlay
from spmcli.inspection.regions import REGION_FEATURES, Region, defect_mask
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, load_dictionary, save_dictionary
from spmcli.sparse.patches import PatchGrid


def woven(rng: np.random.Generator, size: int = 480) -> np.ndarray:
    """A woven-looking texture: two gratings, a slow shading and grain, in 0.2..0.8."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    pattern = (
        0.5 + 0.12 * np.sin(2 * np.pi * x / 9) * np.sin(2 * np.pi * y / 13) + 0.08 * np.sin(2 * np.pi * (x + y) / 21)
    )
    return np.clip(pattern + 0.02 * rng.standard_normal((size, size)), 0, 1)


def crops(texture: np.ndarray, rng: np.random.Generator, count: int, sides=(72, 72)) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        height, width = (int(rng.integers(sides[0], sides[1] + 1)) for _ in range(2))
        top = int(rng.integers(0, texture.shape[0] - height))
        left = int(rng.integers(0, texture.shape[1] - width))
        out.append(texture[top : top + height, left : left + width].copy())
    return out


def draw(image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One defect of ``kind`` on a 72 x 72 crop, and its mask."""
    out = image.copy()
    mask = np.zeros(image.shape, dtype=bool)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    if kind == "scratch":  # thin bright diagonal
        mask = (np.abs((y - 10) - (x - 14)) <= 0) & (y > 10) & (y < 60)
        out[mask] = 0.95
    elif kind == "crack":  # jagged thin dark line
        path = 36 + np.round(3 * np.sin(np.arange(72) / 4)).astype(int)
        for column in range(10, 62):
            mask[path[column] : path[column] + 2, column] = True
        out[mask] = 0.05
    elif kind == "spots":
        for cy, cx in ((20, 20), (50, 30), (30, 52)):
            mask |= (y - cy) ** 2 + (x - cx) ** 2 <= 6
        out[mask] = 0.05
    elif kind == "stain":
        # Darker by 45%, fading out over a few pixels at its rim as real stains
        # do (a hard-edged disc is as much an edge as a stain: its rim's
        # coding residual can be what sets it apart most).
        distance = np.hypot(y - 40, x - 30)
        mask = distance <= 12
        out *= 1 - 0.45 / (1 + np.exp((distance - 12) / 1.5))
    elif kind == "missing_texture":
        mask = (np.abs(y - 36) <= 10) & (np.abs(x - 36) <= 10)
        out[mask] = image.mean()
    return np.clip(out, 0, 1), mask


@pytest.fixture(scope="module")
def textures():
    rng = np.random.default_rng(7)
    texture = woven(rng)
    return {
        "good": crops(texture, rng, 14, sides=(64, 96)),  # different sizes
        "calibration": crops(texture, rng, 20),
        "test_good": crops(texture, rng, 8),
        "to_damage": crops(texture, rng, 5),
    }


@pytest.fixture(scope="module")
def fitted(textures):
    return fit_detector(textures["good"], textures["calibration"], seed=0)


def test_which_modes_are_compared_on_probe_defects():
    # A part cut out by a fixture varies by a few pixels: sizes within 10% of
    # the median's are compared in both modes, as one size is.
    near = [(1250, 500), (1235, 500), (1285, 500), (1260, 500)]
    assert _mode_candidates(DetectorSettings(), near) == (("pooled", "aligned"), "")
    assert _mode_candidates(DetectorSettings(), [(300, 300)] * 3) == (("pooled", "aligned"), "")
    modes, reason = _mode_candidates(DetectorSettings(), [(300, 300), (300, 340), (300, 300)])
    assert modes == ("pooled",)
    assert reason == "the good images differ in size (by up to 13.3%), so positions do not correspond"
    assert _mode_candidates(DetectorSettings(), [(300, 300)] * 2) == (
        ("pooled",),
        "too few good images to compare positions (fewer than 3)",
    )
    assert _mode_candidates(DetectorSettings(mode="aligned"), near) == (("aligned",), "aligned mode requested")
    assert _mode_candidates(DetectorSettings(mode="pooled"), near) == (("pooled",), "pooled mode requested")


def test_learns_from_different_sizes_and_records_the_mode(fitted, textures):
    dictionary, detector = fitted
    record = dictionary.metadata["detector"]
    assert detector.mode == record["mode"] == "pooled"
    assert record["mode_reason"] == detector.mode_reason
    assert detector.mode_reason.startswith("the good images differ in size (by up to 2")
    assert record["mode_self_test"] is None  # crops 64-96 px: only pooled is a candidate
    assert record["settings"]["mode"] == "auto" and record["settings"]["downscale"] == 1
    assert record["n_good_images"] == 14 and record["n_calibration_images"] == 20
    assert record["threshold"] == detector.threshold and record["pixel_threshold"] == detector.pixel_threshold
    assert record["settings"]["score_power"] == 8.0
    # The image threshold is calibrated on the soft maxima, the pixel threshold on the maps' maxima.
    assert detector.threshold == pytest.approx(np.quantile(detector.calibration_scores, 0.95))
    assert detector.pixel_threshold == pytest.approx(np.quantile(detector.calibration_peaks, 0.95))
    assert np.all(detector.calibration_scores <= detector.calibration_peaks)
    good = [detector.score(image, with_map=True) for image in textures["test_good"]]
    assert all(np.isfinite(result.score) for result in good)
    for result in good:
        assert result.score == pytest.approx(image_score(result.anomaly_map, 8.0))
        assert result.peak == pytest.approx(float(result.anomaly_map.max()))


def test_image_score_is_the_power_mean():
    values = np.random.default_rng(0).random((30, 40)) * 3
    for power in (1.0, 3.0, 8.0, 16.0):
        expected = np.mean(values.astype(np.float64) ** power) ** (1 / power)
        assert image_score(values, power) == pytest.approx(expected, rel=1e-12)
    assert image_score(values, math.inf) == values.max()
    assert values.mean() < image_score(values, 8.0) < values.max()
    # Large values do not overflow; empty and all-zero maps score 0; infinity is capped.
    assert image_score(np.full(4, 1e300), 8.0) == pytest.approx(1e300)
    assert image_score(np.zeros((3, 3)), 8.0) == 0.0
    assert image_score(np.array([0.0, np.inf]), 8.0) == 1e300


def test_an_image_that_is_not_anomalous_has_no_region(fitted, textures):
    _, detector = fitted
    damaged, _ = draw(textures["to_damage"][3], "stain")
    result = detector.score(damaged, threshold=1e9)
    assert result.peak > result.pixel_threshold and not result.is_anomaly
    assert result.regions == [] and result.region_level is None


def test_a_spread_out_deviation_is_cut_at_the_image_threshold(fitted, textures):
    _, detector = fitted
    image = textures["test_good"][0]
    plain = detector.score(image)
    assert plain.peak <= detector.pixel_threshold  # no pixel passes the pixel threshold
    # Flagged by a lower image threshold: its regions are cut there, and say why.
    lowered = 0.9 * plain.score
    result = detector.score(image, with_map=True, threshold=lowered)
    assert result.is_anomaly and result.region_level == lowered and result.regions
    assert all(region.explanation.startswith(SPREAD_OUT) for region in result.regions)
    assert all(region.mean > lowered for region in result.regions)
    mask = defect_mask(result.anomaly_map, result.region_level, regions=result.regions)
    assert mask.sum() == sum(region.area for region in result.regions)


@pytest.mark.parametrize("kind", ["scratch", "crack", "spots", "stain", "missing_texture"])
def test_each_defect_kind_is_found_where_it_was_drawn(fitted, textures, kind):
    _, detector = fitted
    good_scores = [detector.score(image).score for image in textures["test_good"]]
    damaged, mask = draw(
        textures["to_damage"][["scratch", "crack", "spots", "stain", "missing_texture"].index(kind)], kind
    )
    result = detector.score(damaged, with_map=True)
    assert result.is_anomaly and result.score > max(good_scores)
    assert result.regions, "an anomalous image has at least one region"
    x0, y0, x1, y1 = result.regions[0].bbox
    assert mask[y0:y1, x0:x1].any(), f"strongest region {result.regions[0]} misses the {kind}"


def test_regions_follow_their_documented_fields(fitted, textures):
    _, detector = fitted
    damaged, _ = draw(textures["to_damage"][3], "stain")
    result = detector.score(damaged, with_map=True)
    assert result.anomaly_map.dtype == np.float32 and result.anomaly_map.shape == damaged.shape
    assert result.region_level == result.pixel_threshold
    mask = defect_mask(result.anomaly_map, result.region_level)
    assert mask.dtype == bool and mask.sum() == sum(region.area for region in result.regions)
    for region in result.regions:
        assert isinstance(region, Region)
        x0, y0, x1, y1 = region.bbox
        assert 0 <= x0 < x1 <= damaged.shape[1] and 0 <= y0 < y1 <= damaged.shape[0]
        inside = result.anomaly_map[y0:y1, x0:x1]
        assert 0 < region.area <= (x1 - x0) * (y1 - y0)
        assert region.peak == pytest.approx(float(inside.max()))
        assert result.pixel_threshold < region.mean <= region.peak
        assert region.feature in REGION_FEATURES
        assert isinstance(region.explanation, str) and region.explanation
        record = region.to_record()
        assert set(record) == {"bbox", "area", "peak", "mean", "feature", "explanation"}
        assert record["bbox"] == [x0, y0, x1, y1]
    # A stain is darker than the good patches, and says so.
    assert result.regions[0].feature == "darker"
    assert result.regions[0].explanation.startswith("darker than the good patches")


def test_missing_texture_is_named(fitted, textures):
    _, detector = fitted
    damaged, _ = draw(textures["to_damage"][4], "missing_texture")
    result = detector.score(damaged)
    assert result.regions[0].feature == "texture_missing"
    assert result.regions[0].explanation.startswith("texture missing")


def test_lighting_changes_are_not_defects(fitted, textures):
    _, detector = fitted
    for image in textures["test_good"][:4]:
        score = detector.score(image).score
        for gain in (0.7, 1.15):
            # No pixel clips at these gains (the texture stays within 0.1..0.9): the score does not change.
            assert (image * gain).max() <= 1
            assert detector.score(image * gain).score == pytest.approx(score, rel=1e-6)


def test_grey_and_colour_mixed(textures):
    good = [
        np.repeat(image[:, :, None], 3, axis=2) if index % 2 else image for index, image in enumerate(textures["good"])
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, detector = fit_detector(good, textures["calibration"], seed=0)
    image = textures["test_good"][0]
    colour = np.repeat(image[:, :, None], 3, axis=2)
    assert detector.score(colour).score == pytest.approx(detector.score(image).score, rel=1e-9)
    # Grey images among the good ones: the detector works in grey.
    assert "colour" not in detector.settings.features
    assert [expert.name for expert in detector.scales[0].experts] == ["joint", "lines", "sparse"]


# A hue direction at constant luma (BT.601): moving a colour along it leaves the grey image unchanged.
_LUMA = np.array([0.299, 0.587, 0.114])
_TINT = np.cross(_LUMA, [0.0, 0.0, 1.0]) / np.linalg.norm(np.cross(_LUMA, [0.0, 0.0, 1.0]))


def tinted(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A colour crop with a disc of another hue at the same brightness, and its mask."""
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    mask = (y - 38) ** 2 + (x - 34) ** 2 <= 12**2
    return image + 0.09 * mask[:, :, None] * _TINT, mask


@pytest.fixture(scope="module")
def colour_textures(textures):
    """The woven texture in a brown tint, with grain in each channel."""
    rng = np.random.default_rng(11)

    def colour(image: np.ndarray) -> np.ndarray:
        planes = image[:, :, None] * np.array([1.05, 0.85, 0.6]) + 0.01 * rng.standard_normal((*image.shape, 3))
        return np.clip(planes, 0, 1)

    return {name: [colour(image) for image in images] for name, images in textures.items()}


def test_colour_images_get_colour_features_and_a_tint_is_found(colour_textures):
    from spmcli.io.images import to_grey

    good, calibration = colour_textures["good"], colour_textures["calibration"]
    dictionary, detector = fit_detector(good, calibration, seed=0)
    assert "colour" in detector.settings.features
    assert dictionary.metadata["detector"]["features"][-2:] == ["colour_red_green", "colour_blue_yellow"]
    assert [expert.name for expert in detector.scales[0].experts] == ["joint", "lines", "sparse", "colour"]
    original = colour_textures["to_damage"][0]
    damaged, mask = tinted(original)
    assert damaged.max() <= 1 and damaged.min() >= 0
    # Grey cannot show the tint...
    np.testing.assert_allclose(to_grey(damaged), to_grey(original), atol=1e-12)
    _, grey_detector = fit_detector(
        good, calibration, settings=DetectorSettings(features=DetectorSettings().without_colour().features), seed=0
    )
    assert grey_detector.score(damaged).score == pytest.approx(grey_detector.score(original).score, rel=1e-9)
    # ...the colour features do, where it is, and say so.
    result = detector.score(damaged)
    assert result.is_anomaly and result.score > 1.5 * detector.threshold
    region = result.regions[0]
    x0, y0, x1, y1 = region.bbox
    assert mask[y0:y1, x0:x1].any()
    assert region.feature == "colour" and region.explanation.startswith("colour: ")
    # Where: around the tint, not the whole crop (the reference colour, the
    # median patch's, hardly moves with the tint).
    assert x0 <= 34 < x1 and y0 <= 38 < y1
    assert sum(other.area for other in result.regions) < 0.5 * mask.size
    assert (x1 - x0) * (y1 - y0) < 0.6 * mask.size
    assert result.score > 10 * detector.score(original).score
    # A change of white balance (each channel its own gain) is not a defect.
    for image in colour_textures["test_good"][:3]:
        balanced = image * np.array([0.9, 1.0, 1.1])
        assert not detector.score(balanced).is_anomaly
    # A grey image cannot be scored by a colour model.
    with pytest.raises(ValueError, match="image is grey, but the detector was learned on colour images"):
        detector.score(to_grey(original))


def fixed_layout_cells(seed: int):
    """Cells of one layout (a dark busbar, a bright centre) with grain: a new cell per call."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:96].astype(float)
    layout = 0.55 + 0.1 * np.exp(-((x - 48) ** 2 + (y - 48) ** 2) / 2000)
    layout[44:48, :] = 0.25  # a dark busbar at a fixed place

    def cell() -> np.ndarray:
        return np.clip(layout + 0.015 * rng.standard_normal(layout.shape), 0, 1)

    return cell


def test_auto_mode_chooses_aligned_for_a_fixed_layout():
    cell = fixed_layout_cells(3)
    dictionary, detector = fit_detector([cell() for _ in range(12)], [cell() for _ in range(20)], seed=0)
    assert detector.mode == "aligned" and dictionary.metadata["detector"]["mode"] == "aligned"
    # The mode was chosen by the probe defects: aligned puts them further above its threshold.
    self_test = dictionary.metadata["detector"]["mode_self_test"]
    ratios = self_test["probe_over_threshold"]
    assert self_test["n_images"] == self_test["n_probes"] == 20 and ratios["aligned"] > ratios["pooled"] > 0
    # ... by more than one standard error of the probes, so it is not the simpler pooled mode.
    lead = self_test["lead"]
    assert lead["mode"] == "aligned" and lead["log_lead"] > lead["standard_error"] > 0
    assert detector.mode_reason.startswith("20 probe defects drawn on 20 calibration images score ")
    assert f"{ratios['aligned']:.2f}x the threshold aligned against {ratios['pooled']:.2f}x pooled" in (
        detector.mode_reason
    )
    cracked = cell()
    for i in range(12, 40):
        cracked[i + 50, i + 10] -= 0.15
    result = detector.score(cracked)
    assert result.is_anomaly
    x0, y0, x1, y1 = result.regions[0].bbox
    assert y0 <= 80 and y1 >= 65 and x0 <= 45 and x1 >= 25
    # The busbar is layout, not a defect: a good cell is not flagged.
    assert not detector.score(cell()).is_anomaly
    # Forcing pooled mode is recorded too.
    _, pooled = fit_detector(
        [cell() for _ in range(12)], [cell() for _ in range(20)], settings=DetectorSettings(mode="pooled")
    )
    assert pooled.mode == "pooled" and pooled.mode_reason == "pooled mode requested"


def test_calibration_count_rules(textures):
    good = textures["good"][:6]
    with pytest.raises(ValueError, match="at least 3"):
        fit_detector(good, textures["calibration"][:2])
    with pytest.warns(UserWarning, match="threshold is rough"):
        _, detector = fit_detector(good, textures["calibration"][:5])
    assert "normal fit to 5" in detector.threshold_method


def test_round_trip_through_the_dictionary_file(tmp_path, fitted, textures):
    dictionary, detector = fitted
    save_dictionary(dictionary, tmp_path / "model.npz")
    loaded = Detector.from_dictionary(load_dictionary(tmp_path / "model.npz"))
    damaged, _ = draw(textures["to_damage"][1], "crack")
    original, again = detector.score(damaged, with_map=True), loaded.score(damaged, with_map=True)
    assert again.score == original.score and np.array_equal(again.anomaly_map, original.anomaly_map)
    assert again.regions == original.regions
    assert (loaded.threshold, loaded.mode, loaded.settings) == (detector.threshold, detector.mode, detector.settings)


def test_old_or_missing_detector_is_refused(fitted):
    dictionary, _ = fitted
    with pytest.raises(NoDetectorError, match="re-run learn-dict"):
        Detector.from_dictionary(Dictionary(dct_dictionary(8, 16), patch_size=8))
    for version in (2, 3):
        old = Dictionary(
            dictionary.atoms, patch_size=8, extras={**dictionary.extras, "detector_version": np.array(version)}
        )
        with pytest.raises(NoDetectorError, match="re-run learn-dict"):
            Detector.from_dictionary(old)
    # Format 5 (no colour features) is read as it was written.
    format_5 = Dictionary(dictionary.atoms, patch_size=8, extras={**dictionary.extras, "detector_version": np.array(5)})
    assert Detector.from_dictionary(format_5).settings == Detector.from_dictionary(dictionary).settings
    # A model without its calibration maxima is incomplete.
    incomplete = {key: value for key, value in dictionary.extras.items() if key != "detector_calibration_peaks"}
    with pytest.raises(NoDetectorError, match="re-run learn-dict"):
        Detector.from_dictionary(Dictionary(dictionary.atoms, patch_size=8, extras=incomplete))
    broken = dict(dictionary.extras)
    broken["detector_bank_0_joint"] = broken["detector_bank_0_joint"][:, :2]
    with pytest.raises(NoDetectorError, match="re-run learn-dict"):
        Detector.from_dictionary(Dictionary(dictionary.atoms, patch_size=8, extras=broken))


def test_a_format_4_model_still_scores_by_the_maximum(fitted, textures):
    """Format 4 (the last before soft maxima) is read as it was written: its
    thresholds were calibrated on map maxima, so its score stays the maximum."""
    dictionary, detector = fitted
    extras = {key: value for key, value in dictionary.extras.items() if key != "detector_calibration_peaks"}
    record = json.loads(str(extras["detector_settings"]))
    del record["score_power"]  # format 4 had no such setting
    extras.update(detector_version=np.array(4), detector_settings=np.array(json.dumps(record)))
    old = Detector.from_dictionary(Dictionary(dictionary.atoms, patch_size=8, extras=extras))
    assert math.isinf(old.settings.score_power)
    assert np.array_equal(old.calibration_peaks, old.calibration_scores)
    damaged, _ = draw(textures["to_damage"][3], "stain")
    result, new = old.score(damaged, with_map=True), detector.score(damaged, with_map=True)
    assert result.score == result.peak == new.peak and np.array_equal(result.anomaly_map, new.anomaly_map)


def test_same_model_from_a_process_pool(textures):
    good, calibration = textures["good"][:8], textures["calibration"]
    serial, _ = fit_detector(good, calibration, seed=4)
    with ProcessPoolExecutor(2) as pool:
        pooled, _ = fit_detector(good, calibration, seed=4, map_function=pool.map)
    assert serial.extras.keys() == pooled.extras.keys()
    for name, value in serial.extras.items():
        assert np.array_equal(value, pooled.extras[name]), name
    assert np.array_equal(serial.atoms, pooled.atoms)


@pytest.mark.filterwarnings("ignore:only 6 calibration images")
def test_same_mode_choice_from_a_process_pool():
    cell = fixed_layout_cells(5)
    good, calibration = [cell() for _ in range(8)], [cell() for _ in range(6)]
    serial, serial_detector = fit_detector(good, calibration, seed=2)
    with ProcessPoolExecutor(2) as pool:
        pooled, pooled_detector = fit_detector(good, calibration, seed=2, map_function=pool.map)
    assert serial.metadata["detector"]["mode_self_test"] == pooled.metadata["detector"]["mode_self_test"]
    assert serial_detector.mode_reason == pooled_detector.mode_reason
    assert serial_detector.mode == pooled_detector.mode
    assert np.array_equal(serial_detector.calibration_scores, pooled_detector.calibration_scores)
    # Fewer than 20 calibration images: the 20 probes are dealt over the 6.
    self_test = serial.metadata["detector"]["mode_self_test"]
    assert self_test["n_images"] == 6 and self_test["n_probes"] == 20


def test_overlay_outlines_without_painting_the_defect(fitted, textures):
    _, detector = fitted
    damaged, drawn = draw(textures["to_damage"][2], "spots")
    result = detector.score(damaged, with_map=True)
    picture = anomaly_overlay(damaged, result.anomaly_map, result.pixel_threshold)
    height, width = damaged.shape
    assert picture.shape == (height, 2 * width + 4, 3)
    left = picture[:, :width]
    contour = np.all(left == CONTOUR_COLOUR, axis=2)
    assert contour.any()
    # The defect's pixels and the whole region stay as they were.
    region = defect_mask(result.anomaly_map, result.pixel_threshold)
    assert not (contour & (region | drawn)).any()
    assert np.allclose(left[region][:, 0], damaged[region])


def test_line_filters_find_thin_lines_not_edges_or_borders():
    flat = np.ones((96, 112))
    for angle in (0.0, 30.0, 90.0):
        image = flat.copy()
        centre, length = np.array([48.0, 56.0]), 60
        direction = np.array([np.sin(np.radians(angle)), np.cos(np.radians(angle))])
        for step in np.linspace(-length / 2, length / 2, 4 * length):
            row, col = np.round(centre + step * direction).astype(int)
            image[row, col] = 0.7  # a one-pixel line, 30% darker than its sides
        dark, bright = line_responses(image, 6.0)
        assert dark.max() == pytest.approx(0.3, abs=0.08), angle
        assert bright.max() < 0.35 * dark.max()  # the filters' side lobes beside a dark line
    # A step edge 30% high is much less of a line than a 30% line, and a ramp meeting the border none.
    edge = flat.copy()
    edge[48:] = 0.7
    assert line_responses(edge, 6.0).max() < 0.4 * 0.3
    ramp = np.tile(np.linspace(0.5, 1.5, 112), (96, 1))
    assert line_responses(ramp, 6.0).max() < 0.01


def test_expert_normaliser_is_a_held_out_quantile():
    rng = np.random.default_rng(0)
    per_image = [rng.standard_normal((400, 2)) for _ in range(12)]
    folds = group_folds(len(per_image), seed=0)
    assert sorted(np.bincount(folds)) == [4, 4, 4]
    expert = fit_expert(
        "joint", np.array([0, 1]), per_image, folds, bank_size=2000, rare_share=0.5, n_neighbours=1, seed=0,
        quantile=0.9,
    )  # fmt: skip
    new = rng.standard_normal((4000, 2))
    exceeding = np.mean(expert.distances(new, 1)[0] / expert.normaliser > 1)
    assert 0.05 < exceeding < 0.15
    # A one-sided expert ignores values below the good level.
    one_sided = fit_expert(
        "lines", np.array([0, 1]), per_image, folds, bank_size=2000, rare_share=0.5, n_neighbours=1, seed=0,
        one_sided=True,
    )  # fmt: skip
    low, high = np.array([[-50.0, 0.0]]), np.array([[50.0, 0.0]])
    assert one_sided.distances(low, 1)[0][0] < 0.1 < 10 < one_sided.distances(high, 1)[0][0]


@pytest.mark.parametrize(("shape", "stride"), [((37, 53), 3), ((40, 40), 4), ((8, 11), 1)])
def test_patch_anomalies_are_averaged_over_the_patches_covering_each_pixel(shape, stride):
    grid = PatchGrid(shape, 8, stride)
    values = np.random.default_rng(5).random((grid.rows.size, grid.cols.size))
    total, count = np.zeros(shape), np.zeros(shape)
    for i, row in enumerate(grid.rows):
        for j, col in enumerate(grid.cols):
            total[row : row + 8, col : col + 8] += values[i, j]
            count[row : row + 8, col : col + 8] += 1
    assert count.min() >= 1  # the grid covers every pixel
    np.testing.assert_allclose(_average_patches(grid, values.ravel()), total / count, rtol=1e-12)


RESIZES = [((75, 75), (150, 150)), ((37, 53), (300, 301)), ((150, 150), (149, 151)), ((10, 10), (7, 13))]


@pytest.mark.parametrize(("source", "target"), RESIZES)
def test_maps_are_resized_as_skimage_resizes_them(source, target):
    from skimage.transform import resize

    image = np.random.default_rng(6).random(source)
    expected = resize(image, target, order=1, mode="edge", anti_aliasing=False)
    np.testing.assert_allclose(_resize_linear(image, target), expected, rtol=0, atol=1e-12)


def test_thin_bank_keeps_a_random_half_and_the_rarest_rows():
    rng = np.random.default_rng(4)
    # One-sided line features: most rows exactly zero, some weak lines, and 30 strong ones.
    rows = np.zeros((6000, 2))
    rows[:2000] = np.abs(rng.normal(0, 0.3, (2000, 2)))
    rows[2000:2030] = 5 + rng.random((30, 2))
    rows = rows[rng.permutation(6000)]
    bank = thin_bank(rows, 400, seed=0)
    assert bank.shape == (400, 2)
    # The random half (200 rows) plus every strong line among the rare half's candidates;
    # the bank stays in the rows' order.
    order = np.random.default_rng(0).permutation(6000)
    typical, candidates = rows[order[:200]], rows[order[200:][: RARE_CANDIDATES * 400]]
    strong = np.sum(candidates.min(axis=1) >= 5)
    assert strong > 10
    assert np.sum(bank.min(axis=1) >= 5) == strong + np.sum(typical.min(axis=1) >= 5)
    positions = [int(np.flatnonzero((rows == row).all(axis=1))[0]) for row in bank if row.any()]
    assert positions == sorted(positions)
    assert thin_bank(rows, 400, seed=0).tobytes() == bank.tobytes()
    assert thin_bank(rows[:300], 400, seed=0).shape == (300, 2)


def test_low_dimensional_expert_search_is_exact_despite_repeated_rows():
    rng = np.random.default_rng(3)
    # A one-sided expert's bank: a third of its rows exactly zero, the rest repeated in pairs.
    values = np.maximum(rng.standard_normal((3000, 2)), 0.0)
    bank = np.concatenate([values, values[:1000], np.zeros((1500, 2))])
    expert = Expert("lines", np.array([0, 1]), bank, one_sided=True)
    queries = rng.standard_normal((500, 2)) * 2
    squared = ((np.maximum(queries, 0.0)[:, None, :] - bank[None]) ** 2).sum(axis=2)
    exact = np.sqrt(np.sort(squared, axis=1))
    distance, nearest = expert.distances(queries, 1)
    np.testing.assert_allclose(distance, exact[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(squared[np.arange(500), nearest]), exact[:, 0], rtol=1e-12, atol=1e-12)
    # With several neighbours, repeated rows count as often as they occur.
    mean_distance, _ = expert.distances(queries, 3)
    np.testing.assert_allclose(mean_distance, exact[:, :3].mean(axis=1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("kind", "feature"), [("scratch", "bright_line"), ("crack", "dark_line")])
def test_thin_lines_are_explained_by_the_line_expert(fitted, textures, kind, feature):
    _, detector = fitted
    damaged, _ = draw(textures["to_damage"][["scratch", "crack"].index(kind)], kind)
    region = detector.score(damaged).regions[0]
    assert region.feature == feature
    assert region.explanation.startswith(f"thin {feature.split('_')[0]} line:")


def test_expert_settings_are_validated():
    assert DetectorSettings().experts == ("joint", "lines", "sparse", "colour")
    with pytest.raises(ValueError, match="experts"):
        DetectorSettings(experts=("joint", "nonsense"))
    with pytest.raises(ValueError, match="no expert"):
        DetectorSettings(experts=("lines",), features=("structure", "contrast"))
    with pytest.raises(ValueError, match="held_out_quantile"):
        DetectorSettings(held_out_quantile=1.0)
    record = DetectorSettings(experts=("joint",), one_sided_experts=()).to_record()
    assert DetectorSettings.from_record(record) == DetectorSettings(experts=("joint",), one_sided_experts=())


@pytest.mark.parametrize(("downscale", "expected"), [(1, 0.04), (2, 0.02)])
def test_working_noise_is_the_pixel_noise_relative_to_the_level(downscale, expected):
    # White noise of 0.02 on a level of 0.5 is 4% of the level; averaging
    # 2 x 2 pixels halves it.
    flat = 0.5 + 0.02 * np.random.default_rng(0).standard_normal((240, 320))
    settings = DetectorSettings(downscale=downscale)
    assert working_noise(flat, settings) == pytest.approx(expected, rel=0.05)
    assert working_noise(np.stack([flat] * 3, axis=-1), settings) == pytest.approx(expected, rel=0.05)
    # A perfectly flat image has no noise (the wavelet estimate alone is NaN there).
    assert working_noise(np.zeros((64, 64)), settings) == 0.0
    assert working_noise(np.full((64, 64), 0.4), settings) == pytest.approx(0.0, abs=1e-12)


def test_blur_follows_the_noise_of_the_good_images():
    assert blur_for_noise(0.0) == 0.0
    assert blur_for_noise(0.03) == pytest.approx(0.03 / (2 * math.sqrt(math.pi) * 0.02), abs=0.01)
    assert blur_for_noise(10.0) == MAX_BLUR
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:80, 0:80]
    pattern = 0.5 + 0.2 * np.sin(x / 3.0) * np.cos(y / 5.0)

    def images(grain, count):
        return [np.clip(pattern + grain * rng.standard_normal(pattern.shape), 0, 1) for _ in range(count)]

    with pytest.warns(UserWarning, match="threshold is rough"):
        clean, _ = fit_detector(images(0.002, 6), images(0.002, 4), seed=0, n_atoms=16)
        grainy, grainy_detector = fit_detector(images(0.05, 6), images(0.05, 4), seed=0, n_atoms=16)
        given, _ = fit_detector(
            images(0.05, 6), images(0.05, 4), settings=DetectorSettings(blur_sigma=0.7), seed=0, n_atoms=16
        )
    clean_record, grainy_record = clean.metadata["detector"], grainy.metadata["detector"]
    # Clean images are barely blurred; grain of 10% of the level the most, 1 pixel.
    assert clean_record["settings"]["blur_sigma"] < 0.1
    assert clean_record["good_image_noise"] < 0.01
    assert grainy_record["good_image_noise"] == pytest.approx(0.1, rel=0.15)
    assert grainy_record["settings"]["blur_sigma"] == blur_for_noise(grainy_record["good_image_noise"]) == MAX_BLUR
    assert grainy_detector.settings.blur_sigma == grainy_record["settings"]["blur_sigma"]
    assert grainy_record["requested_settings"]["blur_sigma"] is None
    # A black good image among them (no detail to estimate from) does not stop learning.
    with pytest.warns(UserWarning, match="threshold is rough"):
        flat_among, _ = fit_detector([np.zeros(pattern.shape), *images(0.002, 5)], images(0.002, 4), seed=0, n_atoms=16)
    assert flat_among.metadata["detector"]["good_image_noise"] < 0.01
    # A blur given is kept, and no noise is estimated.
    assert given.metadata["detector"]["settings"]["blur_sigma"] == 0.7
    assert given.metadata["detector"]["good_image_noise"] is None


def test_blur_setting_is_validated():
    assert DetectorSettings().blur_sigma is None
    assert DetectorSettings(blur_sigma=1).blur_sigma == 1.0
    for wrong in (-0.5, True, float("nan")):
        with pytest.raises(ValueError, match="blur_sigma"):
            DetectorSettings(blur_sigma=wrong)
    with pytest.raises(ValueError, match="blur_sigma is chosen when learning"):
        Detector(
            atoms=dct_dictionary(8, 16),
            patch_size=8,
            settings=DetectorSettings(features=("structure", "contrast"), experts=("joint",), downscale=1),
            mode="pooled",
            mode_reason="",
            scales=[],
            image_shape=(0, 0),
        ).score(np.full((32, 32), 0.5))
