"""Tests for K-SVD denoising (spmcli.restoration.denoising) and the ``reconstruct`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from skimage import data

from spmcli.cli import cli
from spmcli.io.images import read_image, write_image
from spmcli.metrics import psnr
from spmcli.restoration.denoising import error_target, ksvd_denoise, reconstruct_with_dictionary
from spmcli.restoration.noise import estimate_noise_sigma
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, save_dictionary

# Small, fast settings for the CLI tests (the defaults are for real images).
FAST = ["--denoiser", "ksvd", "--n-atoms", "64", "--iters", "2", "--training-patches", "600"]


def piecewise_smooth(size: int = 64) -> np.ndarray:
    """Two smooth ramps split by a diagonal edge, plus a bright disc."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    image = np.where(rows > cols, 0.25 + 0.3 * cols, 0.7 - 0.2 * rows)
    image[(rows - 0.3) ** 2 + (cols - 0.65) ** 2 < 0.02] = 0.9
    return image


def noisy_camera(sigma255: float, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    clean = data.camera()[::2, ::2][:size, :size] / 255.0
    noisy = clean + np.random.default_rng(0).normal(0, sigma255 / 255.0, clean.shape)
    return clean, noisy


# --- numeric core -----------------------------------------------------------


def test_ksvd_denoise_raises_psnr_on_piecewise_smooth_image():
    clean = piecewise_smooth()
    noisy = clean + np.random.default_rng(1).normal(0, 20 / 255, clean.shape)
    result = ksvd_denoise(noisy, 20 / 255, n_atoms=64, n_iterations=3, training_patches=1500, seed=0)
    assert result.image.shape == clean.shape
    gain = psnr(clean, result.image) - psnr(clean, noisy)
    assert gain > 8.0
    assert result.dictionary.atoms.shape == (64, 64)
    assert result.settings["training_patches"] == 1500


def test_ksvd_denoise_is_seeded():
    _, noisy = noisy_camera(25, size=48)
    first = ksvd_denoise(noisy, 25 / 255, n_atoms=32, n_iterations=2, training_patches=400, seed=3)
    second = ksvd_denoise(noisy, 25 / 255, n_atoms=32, n_iterations=2, training_patches=400, seed=3)
    np.testing.assert_array_equal(first.image, second.image)


def test_ksvd_denoise_colour_keeps_shape_and_helps():
    clean = np.dstack([piecewise_smooth(48), piecewise_smooth(48)[::-1], np.full((48, 48), 0.4)])
    noisy = clean + np.random.default_rng(2).normal(0, 20 / 255, clean.shape)
    result = ksvd_denoise(noisy, 20 / 255, n_atoms=64, n_iterations=2, training_patches=800)
    assert result.image.shape == clean.shape
    assert result.dictionary.n_channels == 3
    assert psnr(clean, result.image) > psnr(clean, noisy) + 6.0


def test_reconstruct_with_dictionary_rebuilds_a_clean_image():
    image = piecewise_smooth(40)
    dictionary = Dictionary(dct_dictionary(8, 128), patch_size=8)
    rebuilt, mean_atoms = reconstruct_with_dictionary(image, dictionary, tol=error_target(0.5 / 255, 64))
    assert rebuilt.shape == image.shape
    # Patches meet the target unless they hit the atom cap (a quarter of the dimension).
    assert psnr(image, rebuilt) > 35.0
    assert 0 < mean_atoms <= 16


def test_reconstruct_with_dictionary_sparsity_and_stride():
    image = piecewise_smooth(40)
    dictionary = Dictionary(dct_dictionary(8, 64), patch_size=8)
    one_atom, atoms = reconstruct_with_dictionary(image, dictionary, sparsity=1, stride=4)
    assert atoms <= 1.0
    assert psnr(image, one_atom) > 20.0


def test_reconstruct_with_dictionary_rejects_channel_mismatch():
    dictionary = Dictionary(dct_dictionary(8, 64), patch_size=8)
    with pytest.raises(ValueError, match="3 channel"):
        reconstruct_with_dictionary(np.zeros((16, 16, 3)), dictionary, sparsity=2)


def test_ksvd_denoise_rejects_bad_sigma():
    with pytest.raises(ValueError, match="noise_sigma"):
        ksvd_denoise(np.zeros((16, 16)), 0.0)


def test_sigma_auto_estimate_within_ten_percent():
    clean = data.camera() / 255.0
    for sigma255 in (15, 25, 50):
        noisy = clean + np.random.default_rng(0).normal(0, sigma255 / 255.0, clean.shape)
        estimate = estimate_noise_sigma(noisy) * 255
        assert abs(estimate - sigma255) < 0.1 * sigma255


# --- command line -------------------------------------------------------------


@pytest.fixture
def noisy_png(tmp_path):
    clean, noisy = noisy_camera(20, size=64)
    path = tmp_path / "noisy.png"
    write_image(path, np.clip(noisy, 0, 1), dtype="uint8")
    reference = tmp_path / "clean.png"
    write_image(reference, clean, dtype="uint8")
    return path, reference


def test_cli_sigma_auto_prints_estimate_within_ten_percent(tmp_path):
    clean, noisy = noisy_camera(20, size=256)
    source = tmp_path / "noisy.tif"
    write_image(source, noisy.astype(np.float32), dtype="float32")
    out = tmp_path / "out.tif"
    result = CliRunner().invoke(cli, ["reconstruct", str(source), "-o", str(out), *FAST, "--stride", "4"])
    assert result.exit_code == 0, result.output
    estimate = float(result.output.split(": sigma ")[1].split()[0])
    assert "(estimated)" in result.output
    assert abs(estimate - 20) < 2.0
    denoised = read_image(out)
    assert denoised.dtype == "float32"
    assert psnr(clean, denoised.pixels) > psnr(clean, noisy) + 3.0


@pytest.mark.parametrize(
    ("dtype", "shape", "alpha"),
    [
        ("uint8", (40, 48), False),
        ("uint16", (40, 48), False),
        ("uint8", (40, 48, 3), False),
        ("uint8", (40, 48, 3), True),
    ],
)
def test_cli_keeps_dtype_shape_and_alpha(tmp_path, dtype, shape, alpha):
    rng = np.random.default_rng(0)
    base = np.clip(piecewise_smooth(48)[:40, :48] + rng.normal(0, 0.05, (40, 48)), 0, 1)
    pixels = base if len(shape) == 2 else np.dstack([base, base[::-1], base[:, ::-1]])
    alpha_channel = np.linspace(0, 1, 40 * 48).reshape(40, 48) if alpha else None
    source = tmp_path / "in.png"
    write_image(source, pixels, dtype=dtype, alpha=alpha_channel)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(cli, ["reconstruct", str(source), "-o", str(out), "--sigma", "12", *FAST])
    assert result.exit_code == 0, result.output
    original, written = read_image(source), read_image(out)
    assert written.dtype == dtype
    assert written.pixels.shape == shape
    if alpha:
        np.testing.assert_array_equal(written.alpha, original.alpha)
    else:
        assert written.alpha is None
    assert not np.array_equal(written.pixels, original.pixels)


def test_cli_report_with_reference_folder(tmp_path, noisy_png):
    noisy, clean = noisy_png
    references = tmp_path / "refs"
    references.mkdir()
    (references / "noisy.png").write_bytes(clean.read_bytes())
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli,
        ["reconstruct", str(noisy), "--output-dir", str(tmp_path / "out"), "--sigma", "20", *FAST,
         "--report", str(report), "--reference", str(references)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = json.loads(report.read_text())["records"][0]
    assert entry["sigma"] == pytest.approx(20.0)
    assert entry["sigma_source"] == "given"
    assert entry["settings"]["n_atoms"] == 64
    assert entry["psnr"] > entry["psnr_input"] + 2.0
    assert 0 < entry["ssim"] <= 1
    assert entry["seconds"] > 0
    assert (tmp_path / "out" / "noisy.png").is_file()


@pytest.mark.parametrize("dictionary", [False, True])
def test_cli_wiener_step_is_on_by_default_and_can_be_skipped(tmp_path, dictionary):
    # A crop with structure: on a nearly flat one (the noisy_png sky) the
    # K-SVD estimate is already near 39 dB and the step gains nothing.
    clean_pixels = data.camera()[::2, ::2][64:192, 64:192] / 255.0
    noisy, clean = tmp_path / "noisy.png", tmp_path / "clean.png"
    noisy_pixels = clean_pixels + np.random.default_rng(0).normal(0, 20 / 255, clean_pixels.shape)
    write_image(noisy, np.clip(noisy_pixels, 0, 1), dtype="uint8")
    write_image(clean, clean_pixels, dtype="uint8")
    extra = []
    if dictionary:
        dict_path = tmp_path / "dct.npz"
        save_dictionary(Dictionary(dct_dictionary(8, 128), patch_size=8, preprocessing="remove_mean"), dict_path)
        extra = ["--dict", str(dict_path)]
    psnrs = {}
    for flag in ("--wiener", "--no-wiener"):
        report = tmp_path / f"report{flag}.json"
        result = CliRunner().invoke(
            cli,
            ["reconstruct", str(noisy), "-o", str(tmp_path / f"out{flag}.png"), "--sigma", "20",
             *(extra or FAST), flag, "--report", str(report), "--reference", str(clean)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        entry = json.loads(report.read_text())["records"][0]
        assert entry["settings"]["wiener"] is (flag == "--wiener")
        psnrs[flag] = entry["psnr"]
    # The grouped Wiener step helps, with a learned or a given dictionary.
    assert psnrs["--wiener"] > psnrs["--no-wiener"] + 0.25


def test_cli_dict_with_sparsity(tmp_path, noisy_png):
    noisy, _ = noisy_png
    dict_path = tmp_path / "dct.npz"
    save_dictionary(Dictionary(dct_dictionary(8, 64), patch_size=8), dict_path)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(cli, ["reconstruct", str(noisy), "-o", str(out), "--dict", str(dict_path),
                                      "--sparsity", "3", "--stride", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sigma" not in result.output  # sparsity alone: no noise level needed
    assert read_image(out).pixels.shape == (64, 64)


@pytest.mark.parametrize(
    ("atoms", "patch_size", "channels", "extra", "message"),
    [
        (dct_dictionary(8, 64, 3), 8, 3, [], "dictionary has 3 channel(s) but"),
        (dct_dictionary(6, 64), 6, 1, ["--patch-size", "8"], "has 6x6 patches"),
    ],
)
def test_cli_dict_mismatch_is_a_clear_error(tmp_path, noisy_png, atoms, patch_size, channels, extra, message):
    noisy, _ = noisy_png
    dict_path = tmp_path / "mismatch.npz"
    save_dictionary(Dictionary(atoms, patch_size=patch_size, n_channels=channels), dict_path)
    out = tmp_path / "out.png"
    result = CliRunner().invoke(
        cli, ["reconstruct", str(noisy), "-o", str(out), "--dict", str(dict_path), "--sparsity", "2", *extra]
    )
    if extra:  # a --patch-size that contradicts the dictionary is a usage error, before any work
        assert result.exit_code == 2 and message in result.output
    else:  # a dictionary that does not fit the image fails that input, naming both files
        assert result.exit_code == 3
        assert f"Error: {noisy}: {dict_path}: {message}" in result.output
    assert not out.exists()


def test_cli_sparsity_without_dict_is_a_usage_error(tmp_path, noisy_png):
    noisy, _ = noisy_png
    result = CliRunner().invoke(cli, ["reconstruct", str(noisy), "-o", str(tmp_path / "o.png"), "--sparsity", "3"])
    assert result.exit_code == 2
    assert "--sparsity has no effect without --dict" in result.output


def test_cli_bad_input_fails_alone(tmp_path, noisy_png):
    noisy, _ = noisy_png
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out_dir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", str(noisy), str(broken), "--output-dir", str(out_dir),
                                      "--sigma", "20", *FAST])  # fmt: skip
    assert result.exit_code == 3
    assert "broken.png" in result.output
    assert (out_dir / "noisy.png").is_file()
    assert not (out_dir / "broken.png").exists()


def test_subprocess_denoises_grayscale_png(tmp_path, noisy_png):
    noisy, clean = noisy_png
    out = tmp_path / "den.png"
    completed = subprocess.run(
        [sys.executable, "-m", "spmcli", "reconstruct", str(noisy), "-o", str(out), "--sigma", "20", *FAST,
         "--reference", str(clean)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "PSNR" in completed.stdout
    original = PILImage.open(noisy)
    written = PILImage.open(out)
    assert written.mode == original.mode and written.size == original.size


def test_cli_threads_per_image_are_execution_not_settings(tmp_path, noisy_png, monkeypatch):
    # One image, one worker: the image gets every usable core as threads.
    monkeypatch.setattr("spmcli.commands._batch.usable_cores", lambda: 4)
    noisy, _ = noisy_png
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli, ["reconstruct", str(noisy), "-o", str(tmp_path / "out.png"), "--sigma", "20", "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    header = json.loads(report.read_text())
    assert header["execution"] == {"workers": 1, "scheduler": None, "threads": 4}
    assert "threads" not in header["settings"]


def test_cli_threads_option_sets_threads_and_changes_no_byte(tmp_path, noisy_png):
    noisy, _ = noisy_png
    outputs = {}
    for threads in ("1", "3"):
        report = tmp_path / f"report{threads}.json"
        out = tmp_path / f"out{threads}.png"
        arguments = ["reconstruct", str(noisy), "-o", str(out), "--sigma", "20", "--threads", threads]
        result = CliRunner().invoke(cli, [*arguments, "--report", str(report)])
        assert result.exit_code == 0, result.output
        assert json.loads(report.read_text())["execution"]["threads"] == int(threads)
        outputs[threads] = out.read_bytes()
    assert outputs["1"] == outputs["3"]
    result = CliRunner().invoke(cli, ["reconstruct", str(noisy), "-o", str(tmp_path / "x.png"), "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output and not (tmp_path / "x.png").exists()


def test_ksvd_denoise_threads_change_no_value():
    _, noisy = noisy_camera(25, size=64)
    runs = [ksvd_denoise(noisy, 25 / 255, n_atoms=32, n_iterations=2, n_threads=n).image for n in (1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
