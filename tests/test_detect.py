"""Defect detection: the numeric core on a synthetic texture with drawn defects
(more in test_detector.py), the report format, heatmaps, learn-dict --detector
and detect's exit codes (the command-line tests belong to the CLI)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage

from spmcli.cli import cli
from spmcli.commands.detect import CSV_FIELDS
from spmcli.inspection.calibration import calibrated_threshold, split_calibration
from spmcli.inspection.detector import Detector, DetectorSettings, NoDetectorError
from spmcli.inspection.features import blur_for_noise
from spmcli.inspection.fitting import fit_detector
from spmcli.inspection.overlay import anomaly_overlay, heat_colours
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, load_dictionary, save_dictionary

SIDE = 64


def _texture(rng: np.random.Generator, size: int = 400) -> np.ndarray:
    """A woven-looking texture: two gratings, a slow shading and grain, in 0.2..0.8."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    pattern = (
        0.5 + 0.12 * np.sin(2 * np.pi * x / 9) * np.sin(2 * np.pi * y / 13) + 0.08 * np.sin(2 * np.pi * (x + y) / 21)
    )
    return np.clip(pattern + 0.02 * rng.standard_normal((size, size)), 0, 1)


def _crops(texture: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    tops = rng.integers(0, texture.shape[0] - SIDE, n)
    lefts = rng.integers(0, texture.shape[1] - SIDE, n)
    return [texture[t : t + SIDE, left : left + SIDE].copy() for t, left in zip(tops, lefts, strict=True)]


def _blotch(image: np.ndarray, centre: tuple[int, int] = (40, 22), radius: int = 7) -> np.ndarray:
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    inside = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= radius**2
    out = image.copy()
    out[inside] *= 0.35
    return out


def _scratch(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    for i in range(10, 54):
        out[i, i - 2 : i + 1] = 0.05
    return out


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(7)
    texture = _texture(rng)
    good = _crops(texture, 12, rng)
    calibration = _crops(texture, 8, rng)
    test_good = _crops(texture, 6, rng)
    defects = [_blotch(image) for image in _crops(texture, 3, rng)] + [_scratch(i) for i in _crops(texture, 3, rng)]
    return good, calibration, test_good, defects


@pytest.fixture(scope="module")
def fitted(synthetic):
    good, calibration, _, _ = synthetic
    with pytest.warns(UserWarning, match="threshold is rough"):
        return fit_detector(good, calibration, settings=DetectorSettings(), seed=0)


def test_detector_separates_good_from_defective(synthetic, fitted):
    _, _, test_good, defects = synthetic
    _, detector = fitted
    good_scores = [detector.score(image).score for image in test_good]
    defect_scores = [detector.score(image).score for image in defects]
    assert all(np.isfinite(good_scores + defect_scores))
    assert min(defect_scores) > max(good_scores)
    assert all(detector.is_anomaly(score) for score in defect_scores)


def test_heatmap_peaks_on_the_defect(synthetic, fitted):
    _, _, _, defects = synthetic
    _, detector = fitted
    result = detector.score(defects[0], with_map=True)
    assert result.anomaly_map.shape == defects[0].shape
    peak = np.unravel_index(np.argmax(result.anomaly_map), result.anomaly_map.shape)
    assert abs(peak[0] - 40) <= 10 and abs(peak[1] - 22) <= 10
    # Far from the blotch the map is much lower than at it.
    assert result.anomaly_map[:16, 48:].mean() < 0.5 * result.anomaly_map.max()


def test_quality_figures_and_flat_image_stay_finite(fitted):
    _, detector = fitted
    # A flat image: nothing to reconstruct, and no texture where texture should be.
    result = detector.score(np.full((SIDE, SIDE), 0.5), with_quality=True)
    assert np.isfinite(result.score) and result.score >= 0 and result.is_anomaly
    assert result.regions[0].feature == "texture_missing"
    assert np.isfinite(result.psnr) and np.isfinite(result.ssim)
    assert result.max_patch_error >= 0
    assert np.isnan(detector.score(np.full((SIDE, SIDE), 0.5)).psnr)  # quality only on request


def test_forced_aligned_mode_resizes_other_sizes(synthetic):
    good, calibration, test_good, _ = synthetic
    with pytest.warns(UserWarning):
        _, detector = fit_detector(good, calibration, settings=DetectorSettings(mode="aligned", polarity="dark"))
    assert detector.mode == "aligned" and detector.image_shape == (SIDE, SIDE)
    assert detector.scales[0].positions.mean.shape[0] == len(detector.feature_names)
    bigger = np.kron(test_good[0], np.ones((2, 2)))
    # Another size is resized to the training size, and a size far from it says so.
    message = rf"the image is {2 * SIDE}x{2 * SIDE} pixels, 100% off the aligned detector's {SIDE}x{SIDE}: it was"
    with pytest.warns(UserWarning, match=message):
        result = detector.score(bigger, with_map=True)
    assert np.isfinite(result.score) and result.anomaly_map.shape == bigger.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a few pixels more, as a cut varies: no warning
        detector.score(np.pad(test_good[0], ((0, 3), (0, 0)), mode="reflect"))


def test_detect_warns_when_an_image_is_far_from_the_aligned_size(folders, tmp_path):
    root, _ = folders
    model = tmp_path / "aligned.npz"
    learned = CliRunner().invoke(
        cli,
        ["learn-dict", str(root / "good"), "-o", str(model), "--calibration-images", str(root / "calib"),
         "--mode", "aligned", "--polarity", "dark"],
    )  # fmt: skip
    assert learned.exit_code == 0, learned.output
    assert load_dictionary(model).metadata["detector"]["training_size"] == [SIDE, SIDE]
    assert f"Positions: compared on the {SIDE}x{SIDE} good images' grid" in learned.output
    wide = tmp_path / "wide.png"
    _save(wide, np.kron(np.asarray(PILImage.open(root / "incoming" / "ok_0.png")) / 255.0, np.ones((1, 2))))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["detect", str(wide), "--dict", str(model), "--report", str(report)])
    assert result.exit_code in (0, 1), result.output  # scored (1: flagged as anomalous)
    expected = f"Warning: {wide}: the image is {2 * SIDE}x{SIDE} pixels, 100% off the aligned detector's"
    assert expected in result.output and "Traceback" not in result.output
    payload = json.loads(report.read_text())
    assert payload["model"]["training_size"] == [SIDE, SIDE]
    record = payload["records"][0]
    assert record["status"] == "done" and "positions may not match" in record["warnings"][0]


def test_calibrated_threshold_rules():
    many = np.arange(100, dtype=float)
    threshold, method = calibrated_threshold(many, 0.95)
    assert threshold == pytest.approx(np.quantile(many, 0.95))
    assert method == "quantile 0.95 of 100 calibration image scores"
    # Few scores: the 95% point of a normal fit (mean 2, sd 1 -> 2 + 1.645).
    threshold, method = calibrated_threshold(np.array([1.0, 2.0, 3.0]), 0.95)
    assert threshold == pytest.approx(2 + 1.6448536, abs=1e-6)
    assert "normal fit to 3 calibration image scores" in method
    assert calibrated_threshold(np.array([4.0]), 0.95)[0] == 4.0
    assert calibrated_threshold(np.array([1.0, 5.0]), 1.0)[0] == 5.0
    with pytest.raises(ValueError):
        calibrated_threshold(np.zeros(0), 0.95)


def test_missing_detector_and_small_image_are_reported(synthetic, fitted):
    with pytest.raises(NoDetectorError, match="re-run learn-dict"):
        Detector.from_dictionary(Dictionary(dct_dictionary(8, 16), patch_size=8))
    with pytest.raises(ValueError, match="at least 16"):
        fitted[1].score(np.zeros((10, 80)))


def test_split_calibration_is_seeded_and_disjoint():
    train, calibration = split_calibration(10, 0.25, seed=3)
    assert len(calibration) == 2 and len(train) == 8
    assert not set(train) & set(calibration)
    again = split_calibration(10, 0.25, seed=3)
    assert np.array_equal(again[1], calibration)
    with pytest.raises(ValueError):
        split_calibration(1, 0.5, seed=0)


def test_heat_colours_and_overlay():
    colours = heat_colours(np.array([0.0, 0.5, 1.0]))
    assert colours.shape == (3, 3)
    assert np.allclose(colours[0], 0) and np.all(colours[2] > 0.8)
    image = np.full((8, 8), 0.5)
    anomaly = np.zeros((8, 8))
    anomaly[5:7, 2:5] = 10.0
    overlay = anomaly_overlay(image, anomaly, 1.0)
    assert overlay.shape == (8, 2 * 8 + 4, 3)
    assert np.allclose(overlay[5:7, 2:5], 0.5)  # the defect itself is left visible on the left panel
    right = overlay[:, 8 + 4 :]
    assert right[5, 3, 0] > right[5, 3, 2]  # hot colour where the map is high, on the right panel
    # A float image in other units is shown on its own scale, not clipped to white.
    raw = np.tile(np.linspace(0, 2000, 8), (8, 1))
    shown = anomaly_overlay(raw, anomaly, 1.0)[:, :8, 0]
    assert np.allclose(shown[0], np.linspace(0, 1, 8))


# --- command line ------------------------------------------------------------------------


def _save(path, pixels):
    PILImage.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, synthetic):
    good, calibration, _, defects = synthetic
    root = tmp_path_factory.mktemp("detect")
    for name, images in (("good", good), ("calib", calibration)):
        (root / name).mkdir()
        for index, image in enumerate(images):
            _save(root / name / f"{name}_{index:02d}.png", image)
    # The good images to score are good images learned from: the threshold
    # flags about 5% of *unseen* good images by design (and more with 8
    # calibration images), so these tests of the command's outputs and exit
    # codes would otherwise fail by chance; unseen good images are scored in
    # test_detector_separates_good_from_defective.
    (root / "incoming").mkdir()
    for index, image in enumerate(good[:3]):
        _save(root / "incoming" / f"ok_{index}.png", image)
    for index, image in enumerate(defects[:3:2] + defects[3:4]):
        _save(root / "incoming" / f"defect_{index}.png", image)
    (root / "okonly").mkdir()
    for index, image in enumerate(good[3:6]):
        _save(root / "okonly" / f"ok_{index}.png", image)
    model = root / "model.npz"
    result = CliRunner().invoke(
        cli, ["learn-dict", str(root / "good"), "-o", str(model), "--calibration-images", str(root / "calib")]
    )
    assert result.exit_code == 0, result.output
    assert "pooled detector" in result.output and "8 calibration image scores" in result.output
    return root, model


def test_detect_report_heatmaps_and_exit_codes(folders, tmp_path):
    root, model = folders
    report = tmp_path / "report.json"
    maps = tmp_path / "maps"
    result = CliRunner().invoke(
        cli,
        ["detect", str(root / "incoming"), "--dict", str(model), "--report", str(report), "--heatmap-dir", str(maps)],
    )
    assert result.exit_code == 0, result.output
    assert "Scored 6 of 6 image(s): 3 anomalous" in result.output
    payload = json.loads(report.read_text())
    for key in ("report_format", "spmcli_version", "command", "settings", "model", "started", "finished", "counts"):
        assert key in payload
    assert len(payload["model"]["sha256"]) == 64 and payload["model"]["mode"] == "pooled"
    assert payload["counts"] == {"inputs": 6, "done": 6, "failed": 0, "skipped": 0, "not_started": 0, "anomalies": 3}
    assert [Path(record["input"]).name for record in payload["records"]] == sorted(
        path.name for path in (root / "incoming").iterdir()
    )
    for record in payload["records"]:
        assert record["status"] == "done" and record["error"] is None
        assert np.isfinite(record["score"]) and record["threshold"] == payload["model"]["threshold"]
        assert record["is_anomaly"] == ("defect_" in record["input"])
        raw = tifffile.imread(record["anomaly_map"])
        assert raw.dtype == np.float32 and raw.shape == (SIDE, SIDE)
        assert PILImage.open(record["overlay"]).mode == "RGB"

    failing = CliRunner().invoke(cli, ["detect", str(root / "incoming"), "--dict", str(model), "--fail-on-anomaly"])
    assert failing.exit_code == 1
    relaxed = CliRunner().invoke(
        cli, ["detect", str(root / "incoming"), "--dict", str(model), "--fail-on-anomaly", "--threshold", "1e6"]
    )
    assert relaxed.exit_code == 0 and "0 anomalous" in relaxed.output and "given with --threshold" in relaxed.output
    clean = CliRunner().invoke(cli, ["detect", str(root / "okonly"), "--dict", str(model), "--fail-on-anomaly"])
    assert clean.exit_code == 0, clean.output


def _copy_with_a_broken_image(source, target, broken_name):
    """A copy of the folder ``source`` at ``target``, with a corrupt PNG named ``broken_name`` added."""
    target.mkdir()
    for path in sorted(source.iterdir()):
        (target / path.name).write_bytes(path.read_bytes())
    (target / broken_name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return target


def test_corrupt_image_is_reported_and_the_rest_scored(folders, tmp_path):
    root, model = folders
    batch = _copy_with_a_broken_image(root / "okonly", tmp_path / "batch", "broken.png")
    report = tmp_path / "report.csv"
    result = CliRunner().invoke(cli, ["detect", str(batch), "--dict", str(model), "--report", str(report)])
    assert result.exit_code == 3
    assert "broken.png" in result.output
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_FIELDS
    assert len(rows) == 4
    broken = next(row for row in rows if row["input"].endswith("broken.png"))
    assert broken["error"] and broken["score"] == "" and broken["status"] == "failed"
    scored = [row for row in rows if not row["input"].endswith("broken.png")]
    assert all(np.isfinite(float(row["score"])) and row["error"] == "" for row in scored)


def test_unreadable_and_too_small_good_images_are_named_and_left_out(folders, tmp_path):
    root, _ = folders
    good = _copy_with_a_broken_image(root / "good", tmp_path / "good", "a_broken.png")
    _save(good / "a_tiny.png", np.full((6, 9), 0.5))
    model = tmp_path / "m.npz"
    result = CliRunner().invoke(cli, ["learn-dict", str(good), "-o", str(model), "--detector", "--seed", "3"])
    assert result.exit_code == 3, result.output
    assert f"Error: {good / 'a_broken.png'}: " in result.output
    assert f"Error: {good / 'a_tiny.png'}: image is 9 x 6 pixels; the detector needs at least 16 a side" in (
        result.output
    )
    assert "Traceback" not in result.output
    record = load_dictionary(model).metadata
    assert sorted(record["detector"]["failed_inputs"]) == [str(good / "a_broken.png"), str(good / "a_tiny.png")]
    # The names of the images learned from are those of the images used (the
    # two left out came first in the folder).
    readable = sorted(path.name for path in (root / "good").iterdir())
    assert set(record["training_images"]) < set(readable)
    assert len(record["training_images"]) == record["detector"]["n_good_images"]


def test_dictionary_without_calibration_is_refused(tmp_path, folders):
    root, _ = folders
    plain = tmp_path / "plain.npz"
    save_dictionary(Dictionary(dct_dictionary(8, 16), patch_size=8), plain)
    result = CliRunner().invoke(cli, ["detect", str(root / "okonly"), "--dict", str(plain)])
    assert result.exit_code == 3
    assert "no detector calibration" in result.output and "re-run learn-dict" in result.output


def test_learn_dict_holds_out_a_seeded_share(folders, tmp_path):
    root, _ = folders
    outputs = []
    for name in ("a.npz", "b.npz"):
        result = CliRunner().invoke(
            cli,
            [
                "learn-dict",
                str(root / "good"),
                "-o",
                str(tmp_path / name),
                "--detector",
                "--mode",
                "aligned",
                "--calibration-share",
                "0.34",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "aligned detector" in result.output and "normal fit to 4 calibration image scores" in result.output
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    metadata = load_dictionary(tmp_path / "a.npz").metadata["detector"]
    assert metadata["n_good_images"] == 8 and metadata["n_calibration_images"] == 4


def test_detect_in_a_subprocess(folders, tmp_path):
    root, model = folders
    report = tmp_path / "r.json"
    completed = subprocess.run(
        [sys.executable, "-m", "spmcli", "detect", str(root / "incoming"), "--dict", str(model),
         "--report", str(report), "--fail-on-anomaly"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 1, completed.stderr
    assert "anomalous" in completed.stdout
    assert json.loads(report.read_text())["counts"]["anomalies"] == 3


REGION_FIELDS = {"bbox", "area", "peak", "mean", "feature", "explanation"}


def test_regions_masks_and_mode_in_the_report(folders, tmp_path):
    root, model = folders
    report, masks = tmp_path / "report.json", tmp_path / "masks"
    result = CliRunner().invoke(
        cli,
        ["detect", str(root / "incoming"), "--dict", str(model), "--report", str(report), "--masks-dir", str(masks)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    assert payload["model"]["mode"] in ("pooled", "aligned") and payload["model"]["mode_reason"]
    for record in payload["records"]:
        mask = np.asarray(PILImage.open(record["mask"]))
        assert mask.shape == (SIDE, SIDE) and set(np.unique(mask)) <= {0, 255}
        assert record["n_regions"] == len(record["regions"])
        if not record["is_anomaly"]:
            assert record["regions"] == [] and not mask.any()
            continue
        assert record["regions"] and mask.any()
        for region in record["regions"]:
            assert set(region) == REGION_FIELDS
            x0, y0, x1, y1 = region["bbox"]
            assert 0 <= x0 < x1 <= SIDE and 0 <= y0 < y1 <= SIDE
            assert 0 < region["area"] <= (x1 - x0) * (y1 - y0)
            assert region["peak"] >= region["mean"] > payload["model"]["pixel_threshold"] * 0.5
            assert isinstance(region["explanation"], str) and len(region["explanation"]) > 10
            assert mask[y0:y1, x0:x1].any()  # the mask marks the region
        assert record["region_level"] in (payload["model"]["pixel_threshold"], record["threshold"])
        assert record["threshold"] < record["score"] <= record["peak"]
    # The anomaly line explains the finding in words.
    anomaly_lines = [line for line in result.output.splitlines() if line.startswith("anomaly:")]
    assert len(anomaly_lines) == 3 and all(";" in line for line in anomaly_lines)


def detect_with_masks(folders, tmp_path, *options: str) -> dict:
    """The JSON report of ``detect`` on the incoming folder with --masks-dir and ``options``."""
    root, model = folders
    report, masks = tmp_path / "report.json", tmp_path / "masks"
    result = CliRunner().invoke(
        cli,
        ["detect", str(root / "incoming"), "--dict", str(model), "--report", str(report), "--masks-dir", str(masks),
         *options],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(report.read_text())


def test_a_higher_threshold_leaves_no_region_and_black_masks(folders, tmp_path):
    """--threshold moves the image decision only; an image it clears has no region
    and a black mask, even where its map passes the (calibrated) pixel threshold."""
    _, model = folders
    payload = detect_with_masks(folders, tmp_path, "--threshold", "1000")
    calibrated = Detector.from_dictionary(load_dictionary(model)).pixel_threshold
    assert payload["model"]["threshold"] == 1000 and payload["model"]["pixel_threshold"] == calibrated
    records = payload["records"]
    assert any(record["peak"] > calibrated for record in records)  # the defects still peak above it
    for record in records:
        assert not record["is_anomaly"] and record["regions"] == [] and record["region_level"] is None
        assert not np.asarray(PILImage.open(record["mask"])).any()


def test_a_pixel_threshold_no_pixel_passes_cuts_regions_at_the_image_threshold(folders, tmp_path):
    root, model = folders
    payload = detect_with_masks(folders, tmp_path, "--pixel-threshold", "1000")
    assert payload["model"]["pixel_threshold"] == 1000
    anomalous = [record for record in payload["records"] if record["is_anomaly"]]
    assert len(anomalous) == 3  # the image decision does not change
    for record in anomalous:
        assert record["pixel_threshold"] == 1000 and record["region_level"] == record["threshold"]
        assert record["regions"] and all(region["explanation"].startswith("spread out") for region in record["regions"])
        assert np.asarray(PILImage.open(record["mask"])).any()
    refused = CliRunner().invoke(
        cli, ["detect", str(root / "incoming"), "--dict", str(model), "--pixel-threshold", "nan"]
    )
    assert refused.exit_code == 2 and "--pixel-threshold" in refused.output and "finite" in refused.output


def test_labels_and_ground_truth_masks_give_the_evaluation(folders, tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    root, model = folders
    labels, truth = tmp_path / "labels.csv", tmp_path / "truth"
    truth.mkdir()
    rows = ["path,defective,defect_type"]
    for path in sorted((root / "incoming").iterdir()):
        defective = path.name.startswith("defect_")
        kind = ("blotch" if path.name != "defect_2.png" else "scratch") if defective else ""
        rows.append(f"{path},{int(defective)},{kind}")
        if defective:  # a mask around the drawn defect: the blotch at (40, 22), or the scratch's diagonal
            mask = np.zeros((SIDE, SIDE), np.uint8)
            if kind == "blotch":
                mask[32:49, 14:31] = 255
            else:
                for i in range(10, 54):
                    mask[i, i - 3 : i + 2] = 255
            PILImage.fromarray(mask).save(truth / path.name)
    labels.write_text("\n".join(rows) + "\n")
    report = tmp_path / "eval.json"
    result = CliRunner().invoke(
        cli,
        ["detect", str(root / "incoming"), "--dict", str(model), "--labels", str(labels),
         "--ground-truth-masks", str(truth), "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Evaluation on 6 labelled image(s) (3 defective): AUROC" in result.output
    payload = json.loads(report.read_text())
    evaluation = payload["evaluation"]
    scores = [record["score"] for record in payload["records"]]
    truth_labels = [int("defect_" in record["input"]) for record in payload["records"]]
    assert evaluation["image"]["auroc"] == pytest.approx(roc_auc_score(truth_labels, scores))
    assert evaluation["image"]["average_precision"] == pytest.approx(average_precision_score(truth_labels, scores))
    assert set(evaluation["auroc_per_type"]) == {"blotch", "scratch"}
    assert evaluation["n_masks"] == 3 and 0.5 < evaluation["pixel_auroc"] <= 1 and 0 <= evaluation["aupro"] <= 1
    assert not any("evaluation_map" in record for record in payload["records"])
    assert evaluation["n_inputs_without_label"] == 0 and evaluation["labels_without_input"] == []
    # Inputs without a label, and rows naming no input (a mistyped path), are said and recorded.
    partial = tmp_path / "partial.csv"
    partial.write_text("\n".join([*rows[:3], "elsewhere/missing.png,1,scratch"]) + "\n")
    report = tmp_path / "partial.json"
    result = CliRunner().invoke(
        cli, ["detect", str(root / "incoming"), "--dict", str(model), "--labels", str(partial), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert f"4 input(s) have no label in {partial}: not evaluated" in result.output
    missing = str(tmp_path / "elsewhere" / "missing.png")
    assert f"1 row(s) of {partial} name no input, e.g. {missing}: not evaluated" in result.output
    evaluation = json.loads(report.read_text())["evaluation"]
    assert evaluation["n_inputs_without_label"] == 4 and evaluation["labels_without_input"] == [missing]
    # --ground-truth-masks alone, and a labels file without the columns, are refused up front.
    alone = CliRunner().invoke(cli, ["detect", str(root / "incoming"), "--dict", str(model),
                                     "--ground-truth-masks", str(truth)])  # fmt: skip
    assert alone.exit_code == 2 and "needs --labels" in alone.output
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\na.png,1\n")
    refused = CliRunner().invoke(cli, ["detect", str(root / "incoming"), "--dict", str(model), "--labels", str(bad)])
    assert refused.exit_code == 3 and "needs the columns 'path' and 'defective'" in refused.output
    # One image labelled twice (here once by a path with "./") is refused: which label holds would be a guess.
    twice = tmp_path / "twice.csv"
    first = sorted((root / "incoming").iterdir())[0]
    twice.write_text(f"path,defective\n{first},0\n{first.parent}/./{first.name},1\n")
    refused = CliRunner().invoke(cli, ["detect", str(root / "incoming"), "--dict", str(model), "--labels", str(twice)])
    assert refused.exit_code == 3 and f"line 3: {first.parent}/{first.name} is labelled twice (also on line 2)" in (
        refused.output
    )


def test_learning_from_images_of_different_sizes_and_colour(tmp_path):
    rng = np.random.default_rng(3)
    texture = _texture(rng, size=200)
    good = tmp_path / "good"
    good.mkdir()
    for index, (height, width) in enumerate([(64, 64), (80, 70), (96, 64), (64, 100), (72, 72), (90, 90)]):
        crop = texture[index : index + height, index : index + width]
        if index % 2:
            crop = np.dstack([crop, crop * 0.9, crop * 0.8])  # colour among grey
        _save(good / f"good_{index}.png", crop)
    model = tmp_path / "m.npz"
    result = CliRunner().invoke(cli, ["learn-dict", str(good), "-o", str(model), "--calibration-images", str(good)])
    assert result.exit_code == 0, result.output
    assert "Learned a pooled detector" in result.output and "Mode pooled:" in result.output
    # Calibrating on the images learned from sets the threshold too low: said (this test only checks learning).
    assert (
        f"Warning: 6 of 6 calibration image(s) are also learned from (e.g. {good / 'good_0.png'}): they score lower"
    ) in result.output
    record = load_dictionary(model).metadata["detector"]
    assert record["mode"] == "pooled" and record["training_size"] is None
    assert "Positions:" not in result.output
    # The working images' scale and blur are chosen automatically, and said so.
    noise = record["good_image_noise"]
    assert noise > 0 and record["settings"]["blur_sigma"] == blur_for_noise(noise)
    assert (
        f"Working images: full size (from the good images' sizes), blur {record['settings']['blur_sigma']:.2f} "
        f"working px (from the good images' pixel noise, {100 * noise:.1f}% of their level)"
    ) in result.output


def test_a_given_blur_and_downscale_are_kept_and_said(tmp_path, folders):
    root, _ = folders
    model = tmp_path / "given.npz"
    arguments = ["learn-dict", str(root / "good"), "-o", str(model), "--calibration-images", str(root / "calib")]
    result = CliRunner().invoke(cli, [*arguments, "--blur-sigma", "0.7", "--downscale", "1"])
    assert result.exit_code == 0, result.output
    record = load_dictionary(model).metadata["detector"]
    assert record["settings"]["blur_sigma"] == 0.7 and record["good_image_noise"] is None
    assert record["requested_settings"]["blur_sigma"] == 0.7
    assert "Working images: full size, blur 0.70 working px\n" in result.output


def test_a_colour_model_finds_a_tint_and_reports_a_grey_image(tmp_path):
    """Colour good images give colour features: a tint grey cannot show is
    found and named; a grey image is one clear error, the rest still scored."""
    rng = np.random.default_rng(5)
    texture = _texture(rng, size=300)

    def colour_crop() -> np.ndarray:
        crop = _crops(texture, 1, rng)[0]
        return np.clip(
            crop[:, :, None] * np.array([1.05, 0.85, 0.6]) + 0.01 * rng.standard_normal((SIDE, SIDE, 3)), 0, 1
        )

    for name, count in (("good", 12), ("calib", 8)):
        (tmp_path / name).mkdir()
        for index in range(count):
            _save(tmp_path / name / f"{name}_{index:02d}.png", colour_crop())
    model = tmp_path / "colour.npz"
    learned = CliRunner().invoke(
        cli, ["learn-dict", str(tmp_path / "good"), "-o", str(model), "--calibration-images", str(tmp_path / "calib")]
    )
    assert learned.exit_code == 0, learned.output
    assert "Learned a pooled colour detector" in learned.output
    assert "colour_red_green" in load_dictionary(model).metadata["detector"]["features"]
    grey_model = tmp_path / "grey.npz"
    arguments = ["learn-dict", str(tmp_path / "good"), "-o", str(grey_model), "--grayscale"]
    grey = CliRunner().invoke(cli, [*arguments, "--calibration-images", str(tmp_path / "calib")])
    assert grey.exit_code == 0, grey.output
    assert "Learned a pooled detector" in grey.output
    assert "colour_red_green" not in load_dictionary(grey_model).metadata["detector"]["features"]
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    luma = np.array([0.299, 0.587, 0.114])
    hue = np.cross(luma, [0.0, 0.0, 1.0]) / np.linalg.norm(np.cross(luma, [0.0, 0.0, 1.0]))
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    disc = (y - 30) ** 2 + (x - 34) ** 2 <= 10**2
    _save(incoming / "tint.png", colour_crop() + 0.09 * disc[:, :, None] * hue)
    _save(incoming / "ok.png", colour_crop())
    _save(incoming / "grey.png", colour_crop().mean(axis=2))
    report = tmp_path / "report.json"
    result = CliRunner().invoke(cli, ["detect", str(incoming), "--dict", str(model), "--report", str(report)])
    assert result.exit_code == 3, result.output
    assert "grey.png: the image is grey, but the detector was learned on colour images" in result.output
    assert "Traceback" not in result.output
    records = {Path(record["input"]).name: record for record in json.loads(report.read_text())["records"]}
    assert records["grey.png"]["status"] == "failed" and "score" not in records["grey.png"]
    assert records["tint.png"]["is_anomaly"] and not records["ok.png"]["is_anomaly"]
    assert records["tint.png"]["regions"][0]["feature"] == "colour"
    assert records["tint.png"]["regions"][0]["explanation"].startswith("colour: ")
