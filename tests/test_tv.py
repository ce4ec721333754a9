"""Tests for total-variation denoising (spmcli.restoration.total_variation) and ``spmcli tv-denoise``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image as PILImage
from skimage.restoration import denoise_tv_chambolle

from spmcli.cli import cli
from spmcli.io.images import read_image
from spmcli.metrics import psnr
from spmcli.restoration import total_variation as tv
from spmcli.restoration import tv_solvers, tv_sure
from spmcli.restoration.noise import pca_noise_sigma


def piecewise_constant(size: int = 64) -> np.ndarray:
    """A square and a disc on a background: edges TV should keep."""
    image = np.full((size, size), 0.2)
    image[size // 8 : size // 2, size // 8 : size // 2] = 0.8
    rows, columns = np.mgrid[:size, :size]
    image[(rows - 0.7 * size) ** 2 + (columns - 0.65 * size) ** 2 < (0.2 * size) ** 2] = 0.55
    return image


def noisy_version(clean: np.ndarray, sigma: float = 25 / 255, seed: int = 0) -> np.ndarray:
    return clean + sigma * np.random.default_rng(seed).standard_normal(clean.shape)


# --- numeric core ------------------------------------------------------------------


def test_output_has_lower_total_variation_than_input():
    noisy = noisy_version(piecewise_constant())
    for method in tv_solvers.METHODS:
        result = tv.tv_denoise(noisy, method=method)
        assert tv.total_variation(result.image) < 0.5 * tv.total_variation(noisy)


def test_piecewise_constant_image_is_restored_with_its_edges():
    clean = piecewise_constant(96)
    noisy = noisy_version(clean)
    result = tv.tv_denoise(noisy)  # automatic weight from the estimated sigma
    assert result.sigma == pytest.approx(25 / 255, rel=0.15)
    assert psnr(clean, result.image) > psnr(clean, noisy) + 10.0
    # The edge stays sharp: the jump across the square's right side keeps most of its height.
    row = result.image[30, :]
    assert row[47] - row[49] > 0.45  # true jump 0.6 between columns 47 and 48


def test_weight_direction_is_the_same_for_both_methods():
    noisy = noisy_version(piecewise_constant())
    for method in tv_solvers.METHODS:
        variations = [
            tv.total_variation(tv.tv_denoise(noisy, weight, method=method).image) for weight in (0.02, 0.08, 0.3)
        ]
        assert variations[0] > variations[1] > variations[2], method


def test_same_weight_gives_similar_smoothing_for_both_methods():
    noisy = noisy_version(piecewise_constant())
    chambolle = tv.tv_denoise(noisy, 0.1, method="chambolle").image
    bregman = tv.tv_denoise(noisy, 0.1, method="bregman").image
    ratio = tv.total_variation(bregman) / tv.total_variation(chambolle)
    assert 0.5 < ratio < 2.0


def test_solver_weight_conversion():
    assert tv_solvers.solver_weight(0.1, "chambolle") == 0.1
    assert tv_solvers.solver_weight(0.1, "bregman") == pytest.approx(tv_solvers.BREGMAN_FACTOR / 0.1)
    with pytest.raises(ValueError):
        tv_solvers.solver_weight(0.0, "chambolle")
    with pytest.raises(ValueError):
        tv_solvers.solver_weight(0.1, "nope")


def test_auto_weight_grows_faster_than_sigma_and_shrinks_with_detail():
    assert tv.auto_weight(0.0) == 0.0
    assert tv.auto_weight(0.1) == pytest.approx(tv.AUTO_SCALE * 0.1)
    assert tv.auto_weight(0.1, gradient_rms=0.1) < tv.auto_weight(0.1)
    # Same image content (gradient), more noise: the weight per unit sigma grows.
    assert tv.auto_weight(0.2, 0.1) / 0.2 > tv.auto_weight(0.05, 0.1) / 0.05
    with pytest.raises(ValueError):
        tv.auto_weight(-1.0)


def test_signal_gradient_rms_removes_the_noise_part():
    flat = np.full((128, 128), 0.5)
    assert tv.signal_gradient_rms(noisy_version(flat, 0.1), 0.1) < 0.02
    ramp = np.tile(np.linspace(0, 1, 128), (128, 1))  # gradient 1/127 per pixel along columns
    assert tv.signal_gradient_rms(ramp, 0.0) == pytest.approx(1 / 127, rel=1e-6)


def stripes(size: int = 128, period: int = 4) -> np.ndarray:
    """Fine vertical stripes (texture TV over-smooths) on a mid-grey background."""
    columns = np.arange(size)
    return np.tile(0.5 + 0.2 * np.sin(2 * np.pi * columns / period), (size, 1))


def test_pca_noise_sigma_reads_the_noise_not_the_texture():
    for clean in (np.full((256, 256), 0.5), stripes(256), piecewise_constant(256)):
        assert pca_noise_sigma(noisy_version(clean, 0.05)) == pytest.approx(0.05, rel=0.05)
    colour = np.stack([noisy_version(piecewise_constant(256), 0.04, seed) for seed in range(3)], axis=-1)
    assert pca_noise_sigma(colour) == pytest.approx(0.04, rel=0.05)
    assert pca_noise_sigma(np.zeros((64, 64))) is None  # too few patches


def test_sure_risk_tracks_the_true_error():
    clean = piecewise_constant(256)
    noisy = noisy_version(clean, 0.1, seed=3)
    true_errors, risks = [], []
    for weight in (0.02, 0.08, 0.3):
        true_errors.append(
            np.mean((tv_sure._fixed_chambolle(noisy, weight, True, tv_sure.SURE_ITERATIONS) - clean) ** 2)
        )
        risks.append(tv_sure.sure_risk(noisy, weight, 0.1))
    # Unbiased up to its own spread (about sigma^2 * sqrt(2 / pixels) = 6e-5 here), and ranks the weights alike.
    np.testing.assert_allclose(risks, true_errors, atol=2e-4)
    assert np.argmin(risks) == np.argmin(true_errors)


def test_refine_weight_steps_down_on_texture_only():
    # Stripes under an over-large weight: the smaller candidate is better, and SURE sees it.
    textured = noisy_version(stripes(384), 0.05)
    assert tv_sure.refine_weight(textured, 0.1, 0.05) == pytest.approx(tv_sure.SURE_STEP * 0.1)
    # A cartoon image at a weight below its best: the rule's weight stays.
    cartoon = noisy_version(piecewise_constant(384), 0.1)
    assert tv_sure.refine_weight(cartoon, 0.06, 0.1) == 0.06
    assert tv_sure.refine_weight(cartoon, 0.06, 0.0) == 0.06  # no noise: nothing to estimate
    # Skipped where detail is below the noise, and on images too small to estimate from.
    assert tv_sure.refine_weight(textured, 0.1, 0.05, detail_ratio=0.1) == 0.1
    assert tv_sure.refine_weight(textured[:256, :256], 0.1, 0.05) == 0.1


def test_auto_weight_reports_the_rule_and_can_skip_the_check():
    textured = noisy_version(stripes(256), 0.05)
    checked = tv.tv_denoise(textured)
    rule_only = tv.tv_denoise(textured, refine=False)
    assert checked.rule_weight == rule_only.rule_weight == rule_only.weight
    assert checked.weight in (checked.rule_weight, pytest.approx(tv_sure.SURE_STEP * checked.rule_weight))
    assert tv.tv_denoise(textured, 0.05).rule_weight is None


def test_given_sigma_is_used_and_zero_sigma_changes_nothing():
    noisy = noisy_version(piecewise_constant())
    assert tv.tv_denoise(noisy, sigma=0.05).sigma == 0.05
    unchanged = tv.tv_denoise(noisy, sigma=0.0)
    assert unchanged.weight == 0.0
    np.testing.assert_array_equal(unchanged.image, noisy)


def test_vectorial_solver_matches_scikit_image_for_one_channel():
    noisy = noisy_version(piecewise_constant(48))
    ours, iterations = tv_solvers.vectorial_tv_chambolle(noisy[:, :, None], 0.1, eps=1e-4)
    np.testing.assert_allclose(ours[:, :, 0], denoise_tv_chambolle(noisy, weight=0.1, eps=1e-4), atol=1e-12)
    assert 1 <= iterations <= tv_solvers.CHAMBOLLE_MAX_ITERATIONS


def test_colour_is_denoised_jointly_with_aligned_edges():
    grey = piecewise_constant()
    clean = np.dstack([grey, 1.0 - grey, 0.5 * grey])
    noisy = noisy_version(clean)
    joint = tv.tv_denoise(noisy)
    separate = tv.tv_denoise(noisy, joint_channels=False)
    assert joint.joint_channels and not separate.joint_channels
    assert joint.iterations is not None
    assert psnr(clean, joint.image) > psnr(clean, noisy) + 8.0
    assert psnr(clean, joint.image) > psnr(clean, separate.image)


def test_bad_arguments_raise_value_error():
    image = np.zeros((8, 8))
    with pytest.raises(ValueError, match="anisotropic"):
        tv.tv_denoise(image, 0.1, anisotropic=True)
    with pytest.raises(ValueError, match="method"):
        tv.tv_denoise(image, 0.1, method="fast")
    with pytest.raises(ValueError):
        tv.tv_denoise(np.zeros(5), 0.1)
    assert tv.tv_denoise(noisy_version(piecewise_constant(32)), 0.1, method="bregman", anisotropic=True).weight == 0.1


# --- command line ----------------------------------------------------------------


@pytest.fixture()
def grey_png(tmp_path):
    path = tmp_path / "noisy.png"
    pixels = np.clip(noisy_version(piecewise_constant(64), 20 / 255), 0, 1)
    PILImage.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(path)
    return path


def test_cli_denoises_and_reports(tmp_path, grey_png):
    clean_path = tmp_path / "clean.png"
    PILImage.fromarray(np.rint(piecewise_constant(64) * 255).astype(np.uint8)).save(clean_path)
    output, report = tmp_path / "out.png", tmp_path / "tv.json"
    result = CliRunner().invoke(
        cli, ["tv-denoise", str(grey_png), "-o", str(output), "--reference", str(clean_path), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert (
        "weight" in result.output
        and "sigma" in result.output
        and "estimated" in result.output
        and "PSNR" in result.output
    )
    entry = json.loads(report.read_text())["records"][0]
    assert entry["weight_source"] == "auto" and entry["sigma_source"] == "estimated"
    assert entry["sigma"] == pytest.approx(20, rel=0.2)
    assert entry["psnr"] > entry["psnr_input"] + 6
    assert entry["dtype"] == "uint8" and read_image(output).dtype == "uint8"


def test_cli_given_weight_and_bregman(tmp_path, grey_png):
    output = tmp_path / "out.png"
    result = CliRunner().invoke(
        cli, ["tv-denoise", str(grey_png), "-o", str(output), "--weight", "0.1", "--method", "bregman", "--anisotropic"]
    )
    assert result.exit_code == 0, result.output
    assert "weight 0.1 (given), bregman" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--anisotropic"], "--anisotropic needs --method bregman"),
        (["--weight", "-1"], "must be a finite number > 0"),
        (["--weight", "lots"], "neither 'auto' nor a number"),
        (["--weight", "0.1", "--sigma", "10"], "--sigma has no effect with a given --weight"),
    ],
)
def test_cli_usage_errors(tmp_path, grey_png, arguments, message):
    result = CliRunner().invoke(cli, ["tv-denoise", str(grey_png), "-o", str(tmp_path / "out.png"), *arguments])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out.png").exists()


def test_cli_dtype_round_trips(tmp_path):
    grey = np.clip(noisy_version(piecewise_constant(48), 15 / 255), 0, 1)
    colour = np.dstack([grey, grey[::-1], grey[:, ::-1]])
    inputs = tmp_path / "in"
    inputs.mkdir()
    PILImage.fromarray(np.rint(grey * 65535).astype(np.uint16)).save(inputs / "a16.png")
    tifffile.imwrite(inputs / "b32.tif", grey.astype(np.float32))
    alpha = np.full(grey.shape, 200, np.uint8)
    rgba = np.dstack([np.rint(colour * 255).astype(np.uint8), alpha])
    PILImage.fromarray(rgba, mode="RGBA").save(inputs / "c_rgba.png")
    PILImage.fromarray(np.rint(colour * 255).astype(np.uint8)).save(inputs / "d_rgb.png")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        cli,
        ["tv-denoise", str(inputs), "--output-dir", str(tmp_path / "out"), "--sigma", "15", "--report", str(report)],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    sixteen, floating = read_image(out / "a16.png"), read_image(out / "b32.tif")
    assert sixteen.dtype == "uint16" and floating.dtype == "float32"
    assert floating.pixels.shape == grey.shape
    with_alpha = read_image(out / "c_rgba.png")
    assert with_alpha.pixels.shape == colour.shape
    np.testing.assert_array_equal(np.rint(with_alpha.alpha * 255), alpha)
    assert read_image(out / "d_rgb.png").pixels.shape == colour.shape
    entries = json.loads(report.read_text())["records"]
    assert [entry["sigma"] for entry in entries] == [15.0] * 4
    assert all(entry["sigma_source"] == "given" for entry in entries)
    assert [entry["joint_channels"] for entry in entries] == [False, False, True, True]


def test_cli_batch_with_reference_folder_and_a_bad_input(tmp_path, grey_png):
    inputs, references = tmp_path / "in", tmp_path / "ref"
    inputs.mkdir()
    references.mkdir()
    (inputs / "good.png").write_bytes(grey_png.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    PILImage.fromarray(np.rint(piecewise_constant(64) * 255).astype(np.uint8)).save(references / "good.png")
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        cli,
        ["tv-denoise", str(inputs), "--output-dir", str(tmp_path / "out"), "--reference", str(references),
         "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 3
    assert "broken.png" in result.output and "1 of 2 input(s) could not be processed" in result.output
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "broken.png").exists()
    payload = json.loads(report.read_text())
    records = {Path(record["input"]).name: record for record in payload["records"]}
    assert records["good.png"]["psnr"] > records["good.png"]["psnr_input"]
    assert records["broken.png"]["status"] == "failed" and "PNG" in records["broken.png"]["error"]


def test_cli_reference_file_needs_one_input(tmp_path, grey_png):
    other = tmp_path / "other.png"
    other.write_bytes(grey_png.read_bytes())
    result = CliRunner().invoke(
        cli, ["tv-denoise", str(grey_png), str(other), "--output-dir", str(tmp_path / "o"), "--reference", str(other)]
    )
    assert result.exit_code == 2
    assert "give a folder of references" in result.output


def test_cli_missing_reference_in_folder_fails_that_input(tmp_path, grey_png):
    references = tmp_path / "ref"
    references.mkdir()
    result = CliRunner().invoke(
        cli, ["tv-denoise", str(grey_png), "-o", str(tmp_path / "o.png"), "--reference", str(references)]
    )
    assert result.exit_code == 3
    assert "no reference image named noisy.png" in result.output


def test_real_subprocess(tmp_path, grey_png):
    output = tmp_path / "out.png"
    completed = subprocess.run(
        [sys.executable, "-m", "spmcli", "tv-denoise", str(grey_png), "-o", str(output), "--weight", "0.08"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "weight 0.08 (given), chambolle" in completed.stdout
    denoised = read_image(output).pixels
    assert tv.total_variation(denoised) < tv.total_variation(read_image(grey_png).pixels)


def test_a_photo_turned_by_its_exif_tag_comes_out_displayed_the_same_way(tmp_path):
    # A phone's portrait photo: landscape sensor rows and EXIF orientation 6.
    stored = np.zeros((60, 100, 3), np.uint8)
    stored[:, :50] = 200
    picture = PILImage.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    source = tmp_path / "portrait.jpg"
    picture.save(source, exif=exif.tobytes(), quality=95)
    output = tmp_path / "out.png"
    result = CliRunner().invoke(cli, ["tv-denoise", str(source), "-o", str(output), "--weight", "0.05"])
    assert result.exit_code == 0, result.output
    with PILImage.open(output) as written:
        assert written.size == (60, 100) and written.getexif().get(0x0112) is None
        upright = np.asarray(written.convert("L"), dtype=float)
    # The bright half is at the top, as the photo is shown, not on the left as stored.
    assert upright[:45].mean() > 150 > 50 > upright[55:].mean()
