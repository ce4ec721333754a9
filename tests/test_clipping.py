"""Tests for noise clipped at black and white (spmcli.restoration.clipping) and
its use by the denoisers and ``spmcli reconstruct --clipped``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from spmcli.cli import cli
from spmcli.io.images import read_image, write_image
from spmcli.metrics import psnr
from spmcli.restoration.clipping import clipped_mean, declip, looks_clipped
from spmcli.restoration.collaborative_denoising import collaborative_denoise
from spmcli.restoration.denoising import ksvd_denoise

SIGMA = 25 / 255


def page_with_text(size: int = 96) -> np.ndarray:
    """A white page with black bars and a mid-grey band: most pixels on the range's ends."""
    page = np.ones((size, size))
    page[10:20, 8:80] = 0.0
    page[40:46, 8:60] = 0.0
    page[60:90, :] = 0.5
    return page


def clipped_noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """What an 8-bit file of the noisy image holds."""
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.clip(np.round(noisy * 255), 0, 255) / 255


@pytest.mark.parametrize("level", [0.0, 0.02, 0.1, 0.5, 0.93, 1.0])
def test_clipped_mean_matches_monte_carlo(level):
    samples = np.clip(level + np.random.default_rng(1).normal(0, SIGMA, 400_000), 0, 1)
    assert clipped_mean(level, SIGMA) == pytest.approx(samples.mean(), abs=3e-4)


def test_declip_inverts_clipped_mean_and_leaves_mid_grey_alone():
    levels = np.linspace(0, 1, 101)
    np.testing.assert_allclose(declip(clipped_mean(levels, SIGMA), SIGMA), levels, atol=1e-4)
    middle = np.linspace(0.4, 0.6, 21)
    np.testing.assert_allclose(declip(middle, SIGMA), middle, atol=1e-6)
    # Beyond the means of black and white: the ends of the range.
    assert declip(np.array([-0.1, 1.2]), SIGMA).tolist() == [0.0, 1.0]


def test_looks_clipped():
    clean = page_with_text()
    assert looks_clipped(clipped_noisy(clean, SIGMA))
    assert not looks_clipped(clean + np.random.default_rng(0).normal(0, SIGMA, clean.shape))
    assert not looks_clipped(np.full((8, 8), 0.5))


def test_collaborative_denoise_undoes_the_clipping_bias():
    clean = page_with_text()
    noisy = clipped_noisy(clean, SIGMA)
    corrected = collaborative_denoise(noisy, SIGMA)
    plain = collaborative_denoise(noisy, SIGMA, clipped=False)
    assert corrected.settings["clipped"] is True and plain.settings["clipped"] is False
    white = clean == 1.0
    # Clipping cut the noise's upper half off the white page: the plain
    # estimate is darker by about sigma / sqrt(2 pi) (10 grey levels).
    assert 255 * (1 - plain.image[white].mean()) > 7
    assert 255 * (1 - corrected.image[white].mean()) < 1.5
    assert 255 * np.abs(corrected.image[clean == 0.0]).mean() < 1.5
    assert psnr(clean, corrected.image) > psnr(clean, plain.image) + 3
    # Mid-grey is far from both ends: untouched.
    band = (slice(66, 84), slice(6, 90))
    np.testing.assert_allclose(corrected.image[band], plain.image[band], atol=1e-3)


def test_unclipped_input_is_left_as_it_was():
    clean = page_with_text()
    noisy = clean + np.random.default_rng(0).normal(0, SIGMA, clean.shape)
    automatic = collaborative_denoise(noisy, SIGMA)
    assert automatic.settings["clipped"] is False
    np.testing.assert_array_equal(automatic.image, collaborative_denoise(noisy, SIGMA, clipped=False).image)


def test_ksvd_denoise_undoes_the_clipping_bias():
    clean = page_with_text(64)
    noisy = clipped_noisy(clean, SIGMA)
    options = {"n_atoms": 32, "n_iterations": 2, "training_patches": 500, "seed": 0}
    corrected = ksvd_denoise(noisy, SIGMA, **options)
    plain = ksvd_denoise(noisy, SIGMA, clipped=False, **options)
    assert corrected.settings["clipped"] is True
    assert psnr(clean, corrected.image) > psnr(clean, plain.image) + 2


def test_cli_clipped_auto_and_no(tmp_path):
    noisy_path = tmp_path / "noisy.png"
    write_image(noisy_path, clipped_noisy(page_with_text(), SIGMA), dtype="uint8")
    runner = CliRunner()
    outputs = {}
    for choice in ("auto", "no"):
        output, report = tmp_path / f"{choice}.png", tmp_path / f"{choice}.json"
        result = runner.invoke(
            cli, ["reconstruct", str(noisy_path), "-o", str(output), "--sigma", "25", "--clipped", choice,
                  "--report", str(report)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[choice] = read_image(output).pixels
        record = json.loads(report.read_text())["records"][0]
        assert record["settings"]["clipped"] is (choice == "auto")
    white = page_with_text() == 1.0
    assert outputs["auto"][white].mean() > outputs["no"][white].mean() + 6 / 255


def test_cli_clipped_with_dict_is_a_usage_error(tmp_path):
    from spmcli.sparse.dictionary import Dictionary, dct_dictionary, save_dictionary

    save_dictionary(Dictionary(dct_dictionary(8, 64), patch_size=8), tmp_path / "d.npz")
    write_image(tmp_path / "in.png", page_with_text(32), dtype="uint8")
    result = CliRunner().invoke(
        cli, ["reconstruct", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--dict",
              str(tmp_path / "d.npz"), "--sparsity", "3", "--clipped", "yes"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--clipped" in result.output
    assert not (tmp_path / "out.png").exists()
