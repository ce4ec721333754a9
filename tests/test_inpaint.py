"""Tests of inpainting: the numeric core and the ``spmcli inpaint`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from spmcli.cli import cli
from spmcli.io.images import read_image, write_image
from spmcli.restoration.inpainting import MAX_PASSES, MIN_PASSES, automatic_passes, inpaint, threshold_schedule
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, save_dictionary


def psnr_on(reference: np.ndarray, estimate: np.ndarray, where: np.ndarray) -> float:
    error = (reference - estimate)[where]
    return float(10 * np.log10(1.0 / np.mean(error * error)))


def dct_sparse_image(size: int = 48) -> np.ndarray:
    """An image whose 8x8 patches are sparse over the DCT: a sum of a few
    low-frequency cosines with periods that divide the patch grid."""
    y, x = np.mgrid[:size, :size].astype(float)
    image = 0.5 + 0.15 * np.cos(np.pi * x / 8) + 0.1 * np.cos(np.pi * y / 4) + 0.08 * np.cos(np.pi * (x + y) / 8)
    return image


def random_missing(shape: tuple[int, int], share: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < share


def write_png(path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


@pytest.fixture
def texture_uint8() -> np.ndarray:
    return np.rint(dct_sparse_image(40) * 255).astype(np.uint8)


# --- the numeric core ----------------------------------------------------------------


def test_threshold_schedule_decreases_geometrically():
    schedule = threshold_schedule(3, 0.4, 0.1)
    assert np.allclose(schedule, [0.4, 0.2, 0.1])
    assert threshold_schedule(0, 0.4, 0.1).size == 0


def test_sparse_image_with_30_percent_missing_is_recovered_almost_exactly():
    image = dct_sparse_image(48)
    missing = random_missing(image.shape, 0.3)
    result = inpaint(np.where(missing, 0.0, image), missing)
    assert psnr_on(image, result.pixels, missing) > 45.0
    # And with a dictionary learned from the estimate after it, still close.
    learned = inpaint(np.where(missing, 0.0, image), missing, learn_iterations=3, n_atoms=64, learn_patches=500, seed=0)
    assert learned.atoms.shape == (64, 64)
    assert psnr_on(image, learned.pixels, missing) > 40.0


def test_observed_pixels_are_exactly_the_input():
    rng = np.random.default_rng(1)
    image = rng.random((24, 30))
    missing = random_missing(image.shape, 0.5)
    result = inpaint(image, missing, n_atoms=32, learn_patches=200)
    assert np.array_equal(result.pixels[~missing], image[~missing])
    assert result.pixels.shape == image.shape
    assert np.all((result.pixels >= 0) & (result.pixels <= 1))


def test_large_hole_is_filled_not_left_black():
    image = np.full((40, 40), 0.6)
    missing = np.zeros(image.shape, bool)
    missing[5:35, 5:35] = True  # far larger than a patch
    result = inpaint(np.where(missing, 0.0, image), missing, learn_iterations=0)
    assert np.allclose(result.pixels, 0.6, atol=1e-3)


def test_smooth_first_guess_fills_large_holes_too():
    y, x = np.mgrid[:40, :40] / 40
    image = 0.3 + 0.4 * x * y
    missing = np.zeros(image.shape, bool)
    missing[8:32, 10:30] = True
    result = inpaint(np.where(missing, 0.0, image), missing, first_guess="smooth", learn_iterations=0)
    assert result.stages["smooth"] == 1
    assert np.abs(result.pixels - image)[missing].max() < 0.1
    with pytest.raises(ValueError, match="first_guess"):
        inpaint(image, missing, first_guess="magic")


def test_band_processing_gives_the_same_result(monkeypatch):
    import spmcli.restoration.inpainting as core

    image = dct_sparse_image(40) + 0.05 * np.random.default_rng(3).random((40, 40))
    missing = random_missing(image.shape, 0.4)
    settings = {"n_atoms": 32, "learn_patches": 300, "learn_iterations": 2}
    whole = inpaint(image, missing, **settings).pixels
    monkeypatch.setattr(core, "BAND_PATCHES", 20)  # 20 coded patches per band in the dictionary stage
    banded = inpaint(image, missing, **settings).pixels
    assert np.allclose(whole, banded, atol=1e-12)


def test_colour_image_keeps_its_channels():
    image = np.stack([dct_sparse_image(32), 1 - dct_sparse_image(32), np.full((32, 32), 0.3)], axis=2)
    missing = random_missing(image.shape[:2], 0.3)
    result = inpaint(np.where(missing[:, :, None], 0.0, image), missing, n_atoms=48, learn_patches=300)
    assert result.pixels.shape == image.shape
    assert np.array_equal(result.pixels[~missing], image[~missing])
    assert psnr_on(image, result.pixels, np.repeat(missing[:, :, None], 3, axis=2)) > 35.0


def test_a_grey_picture_stored_as_rgb_is_filled_like_the_grey_image():
    # The colour stages work on the channels' mean and chroma: a picture with
    # R = G = B has a luminance equal to the grey image and no chroma, so the
    # thresholds and grouping tuned on grey images apply unchanged.
    grey = dct_sparse_image(40) * 0.6 + 0.2 * np.random.default_rng(1).random((40, 40))
    missing = random_missing(grey.shape, 0.5)
    filled_grey = inpaint(np.where(missing, 0.0, grey), missing).pixels
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    filled_rgb = inpaint(np.where(missing[:, :, None], 0.0, rgb), missing).pixels
    for channel in range(3):
        assert np.allclose(filled_rgb[:, :, channel], filled_grey, atol=1e-5)


def test_given_dictionary_is_used_and_checked():
    image = dct_sparse_image(32)
    missing = random_missing(image.shape, 0.3)
    atoms = dct_dictionary(8, 100)
    result = inpaint(image, missing, atoms=atoms, threshold_passes=0)
    assert result.atoms is atoms or np.array_equal(result.atoms, atoms)
    assert psnr_on(image, result.pixels, missing) > 30.0
    with pytest.raises(ValueError, match="need 64"):
        inpaint(image, missing, atoms=dct_dictionary(6, 50))


def test_small_hole_in_a_large_image_touches_only_its_neighbourhood():
    # The same 6x6 hole in a 96x96 and a 480x480 image: the same patches are
    # filtered, a handful per pass (references owning a missing pixel).
    processed = []
    for size in (96, 480):
        image = np.tile(dct_sparse_image(48), (size // 48, size // 48))
        missing = np.zeros(image.shape, bool)
        missing[40:46, 50:56] = True
        result = inpaint(np.where(missing, 0.0, image), missing)
        assert np.array_equal(result.pixels[~missing], image[~missing])
        assert psnr_on(image, result.pixels, missing) > 35.0
        processed.append(result.patches_processed)
    passes = result.stages["collaborative"]
    assert processed[0] == processed[1]
    # 6 missing rows and columns fall in at most 3 reference rows and columns (stride 3).
    assert 0 < processed[1] <= passes * 9


def test_passes_follow_the_mask():
    rng = np.random.default_rng(0)
    hole = np.zeros((64, 64), bool)
    hole[10:30, 10:30] = True
    assert automatic_passes(hole) == MAX_PASSES
    assert automatic_passes(rng.random((64, 64)) < 0.5) == MAX_PASSES
    assert automatic_passes(rng.random((128, 128)) < 0.01) == MIN_PASSES
    image = dct_sparse_image(64)
    sparse = rng.random(image.shape) < 0.01
    result = inpaint(np.where(sparse, 0.0, image), sparse)
    assert result.stages["collaborative"] == MIN_PASSES
    assert psnr_on(image, result.pixels, sparse) > 45.0


def test_observed_pixels_are_kept_bit_for_bit_in_colour_and_with_a_dictionary():
    rng = np.random.default_rng(4)
    image = rng.random((40, 36, 3))
    missing = random_missing(image.shape[:2], 0.4, seed=2)
    for settings in ({}, {"atoms": dct_dictionary(8, 100, 3)}, {"learn_iterations": 1, "n_atoms": 32}):
        result = inpaint(image, missing, threshold_passes=4, **settings)
        assert np.array_equal(result.pixels[~missing], image[~missing])
        assert np.all((result.pixels >= 0) & (result.pixels <= 1))


def test_core_rejects_bad_masks():
    image = np.zeros((16, 16))
    with pytest.raises(ValueError, match="mask is 8 x 16"):
        inpaint(image, np.zeros((16, 8), bool))
    with pytest.raises(ValueError, match="every pixel is missing"):
        inpaint(image, np.ones((16, 16), bool))
    nothing = inpaint(image + 0.25, np.zeros((16, 16), bool))
    assert np.array_equal(nothing.pixels, image + 0.25)


# --- the command line ------------------------------------------------------------------


def run(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


FAST = ["--passes", "8", "--learn-iters", "1", "--n-atoms", "32"]


def test_cli_mask_keeps_observed_pixels_bit_for_bit_uint8(tmp_path, texture_uint8):
    rng = np.random.default_rng(2)
    damaged = texture_uint8.copy()
    missing = random_missing(damaged.shape, 0.4)
    damaged[missing] = rng.integers(0, 256, int(missing.sum()))
    write_png(tmp_path / "in.png", damaged)
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    result = run(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                  "-o", str(tmp_path / "out.png"), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "filled" in result.output
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.dtype == np.uint8
    assert np.array_equal(out[~missing], damaged[~missing])
    assert psnr_on(texture_uint8 / 255, out / 255, missing) > 35.0


def test_cli_uint16_observed_pixels_bit_for_bit(tmp_path):
    image = np.rint(dct_sparse_image(40) * 65535).astype(np.uint16)
    image[3, 4] = 65535
    image[7, 7] = 1
    missing = random_missing(image.shape, 0.3, seed=3)
    missing[3, 4] = missing[7, 7] = False
    damaged = np.where(missing, 0, image).astype(np.uint16)
    write_image(tmp_path / "in.png", damaged / 65535, dtype="uint16")
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    result = run(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                  "-o", str(tmp_path / "out.png"), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = read_image(tmp_path / "out.png")
    assert out.dtype == "uint16"
    stored = np.rint(out.pixels * 65535).astype(np.uint16)
    assert np.array_equal(stored[~missing], damaged[~missing])


def test_cli_mask_invert_and_missing_value_give_the_same_result(tmp_path, texture_uint8):
    missing = random_missing(texture_uint8.shape, 0.3, seed=4)
    damaged = np.where(missing, 0, np.maximum(texture_uint8, 1)).astype(np.uint8)
    write_png(tmp_path / "in.png", damaged)
    write_png(tmp_path / "observed.png", (~missing * 255).astype(np.uint8))
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    outputs = {}
    for name, extra in {
        "mask": ["--mask", str(tmp_path / "mask.png")],
        "invert": ["--mask", str(tmp_path / "observed.png"), "--mask-invert"],
        "value": ["--missing-value", "0"],
    }.items():
        result = run(["inpaint", str(tmp_path / "in.png"), *extra, "-o", str(tmp_path / f"{name}.png"), *FAST])
        assert result.exit_code == 0, result.output
        outputs[name] = np.asarray(Image.open(tmp_path / f"{name}.png"))
    assert np.array_equal(outputs["mask"], outputs["invert"])
    assert np.array_equal(outputs["mask"], outputs["value"])
    assert np.all(outputs["mask"][missing] > 0)  # filled, not left black


def test_cli_colour_rgba_keeps_layout_and_alpha(tmp_path):
    rgb = np.stack([dct_sparse_image(32), 1 - dct_sparse_image(32), np.full((32, 32), 0.3)], axis=2)
    alpha = np.full((32, 32), 200, np.uint8)
    rgba = np.dstack([np.rint(rgb * 255).astype(np.uint8), alpha])
    missing = random_missing((32, 32), 0.3, seed=5)
    write_png(tmp_path / "in.png", rgba)
    mask_rgb = np.zeros((32, 32, 3), np.uint8)
    mask_rgb[missing, 1] = 255  # a colour mask: any nonzero channel marks missing
    write_png(tmp_path / "mask.png", mask_rgb)
    result = run(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                  "-o", str(tmp_path / "out.png"), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (32, 32, 4)
    assert np.array_equal(out[~missing], rgba[~missing])
    assert np.array_equal(out[:, :, 3], alpha)


def test_cli_wrong_shape_mask_is_an_input_error(tmp_path, texture_uint8):
    write_png(tmp_path / "in.png", texture_uint8)
    write_png(tmp_path / "mask.png", np.zeros((20, 30), np.uint8))
    result = CliRunner().invoke(cli, ["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                                      "-o", str(tmp_path / "out.png")])  # fmt: skip
    assert result.exit_code == 3
    assert "mask is 30 x 20 pixels but the image is 40 x 40" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.png").exists()


def test_cli_empty_mask_is_a_reported_copy(tmp_path, texture_uint8):
    write_png(tmp_path / "in.png", texture_uint8)
    write_png(tmp_path / "mask.png", np.zeros((40, 40), np.uint8))
    result = run(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                  "-o", str(tmp_path / "out.png"), "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert result.exit_code == 0
    assert "no pixel is missing; copied unchanged" in result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), texture_uint8)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["records"][0]["missing_share"] == 0.0


def test_cli_everything_missing_is_an_input_error(tmp_path, texture_uint8):
    write_png(tmp_path / "in.png", texture_uint8)
    write_png(tmp_path / "mask.png", np.full((40, 40), 255, np.uint8))
    result = CliRunner().invoke(cli, ["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                                      "-o", str(tmp_path / "out.png")])  # fmt: skip
    assert result.exit_code == 3
    assert "every pixel is missing" in result.output
    assert not (tmp_path / "out.png").exists()


def test_cli_usage_errors(tmp_path, texture_uint8):
    write_png(tmp_path / "in.png", texture_uint8)
    write_png(tmp_path / "mask.png", np.zeros((40, 40), np.uint8))
    base = ["inpaint", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png")]
    both = CliRunner().invoke(cli, [*base, "--mask", str(tmp_path / "mask.png"), "--missing-value", "0"])
    assert both.exit_code == 2
    assert "exactly one of --mask" in both.output
    neither = CliRunner().invoke(cli, base)
    assert neither.exit_code == 2
    invert_alone = CliRunner().invoke(cli, [*base, "--missing-value", "0", "--mask-invert"])
    assert invert_alone.exit_code == 2
    missing_mask = CliRunner().invoke(cli, [*base, "--mask", str(tmp_path / "nope.png")])
    assert missing_mask.exit_code == 3
    assert "nope.png: no such file" in missing_mask.output
    # A missing value no pixel can hold is a mistake in the command, not "nothing missing".
    not_finite = CliRunner().invoke(cli, [*base, "--missing-value", "nan"])
    assert not_finite.exit_code == 2 and "nan is not a finite number" in not_finite.output
    for value in ("300", "12.5", "-1"):
        impossible = CliRunner().invoke(cli, [*base, "--missing-value", value])
        assert impossible.exit_code == 3, impossible.output
        assert f"--missing-value {float(value):g} cannot occur in an 8-bit image (whole numbers 0..255)" in (
            impossible.output
        )
        assert not (tmp_path / "out.png").exists()


def test_cli_dictionary_channels_are_checked_and_used(tmp_path, texture_uint8):
    missing = random_missing(texture_uint8.shape, 0.3, seed=6)
    write_png(tmp_path / "in.png", texture_uint8)
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    save_dictionary(Dictionary(dct_dictionary(8, 64), 8, 1, "remove_mean", {}), tmp_path / "grey.npz")
    save_dictionary(Dictionary(dct_dictionary(8, 64, 3), 8, 3, "remove_mean", {}), tmp_path / "colour.npz")
    base = ["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "--passes", "4"]
    good = run([*base, "--dict", str(tmp_path / "grey.npz"), "-o", str(tmp_path / "a.png")])
    assert good.exit_code == 0, good.output
    bad = CliRunner().invoke(cli, [*base, "--dict", str(tmp_path / "colour.npz"), "-o", str(tmp_path / "b.png")])
    assert bad.exit_code == 3
    assert "dictionary has 3 channel(s) but" in bad.output and "has 1" in bad.output


def test_cli_report_with_reference(tmp_path, texture_uint8):
    missing = random_missing(texture_uint8.shape, 0.3, seed=7)
    write_png(tmp_path / "truth.png", texture_uint8)
    write_png(tmp_path / "in.png", np.where(missing, 0, texture_uint8).astype(np.uint8))
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    result = run(["inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                  "-o", str(tmp_path / "out.png"), "--reference", str(tmp_path / "truth.png"),
                  "--report", str(tmp_path / "r.json"), *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "r.json").read_text())["records"][0]
    assert entry["missing_share"] == pytest.approx(missing.mean())
    assert entry["seconds"] > 0
    assert entry["psnr_missing"] > 35.0
    assert entry["psnr"] > entry["psnr_missing"]


def test_cli_batch_shares_the_mask(tmp_path, texture_uint8):
    missing = random_missing(texture_uint8.shape, 0.2, seed=8)
    for name in ("a", "b"):
        write_png(tmp_path / f"{name}.png", texture_uint8)
    write_png(tmp_path / "other.png", np.zeros((30, 30), np.uint8))
    mask_dir = tmp_path / "m"
    mask_dir.mkdir()
    write_png(mask_dir / "mask.png", (missing * 255).astype(np.uint8))
    result = CliRunner().invoke(cli, ["inpaint", str(tmp_path / "*.png"), "--mask", str(mask_dir / "mask.png"),
                                      "--output-dir", str(tmp_path / "out"), *FAST])  # fmt: skip
    assert result.exit_code == 3  # other.png does not fit the mask; a and b are done
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "b.png").exists()
    assert not (tmp_path / "out" / "other.png").exists()
    assert "1 of 3 input(s) could not be processed" in result.output


def test_subprocess_end_to_end(tmp_path, texture_uint8):
    missing = random_missing(texture_uint8.shape, 0.3, seed=9)
    write_png(tmp_path / "in.png", np.where(missing, 0, texture_uint8).astype(np.uint8))
    write_png(tmp_path / "mask.png", (missing * 255).astype(np.uint8))
    completed = subprocess.run(
        [sys.executable, "-m", "spmcli", "inpaint", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
         "-o", str(tmp_path / "out.png"), *FAST],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "filled" in completed.stdout
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert psnr_on(texture_uint8 / 255, out / 255, missing) > 35.0
