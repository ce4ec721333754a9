"""Values meant for another intensity scale are refused by the library with a
message naming the scale (issue: units are not checked in the library)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from spmcli.cli import cli
from spmcli.restoration import collaborative_wiener, inpaint, ksvd_denoise, tv_denoise


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    rng = np.random.default_rng(0)
    clean = np.tile(np.linspace(0.2, 0.8, 32), (32, 1))
    return clean + rng.normal(0, 0.1, clean.shape)


def test_ksvd_denoise_refuses_a_0_255_sigma_on_a_0_1_image(noisy):
    with pytest.raises(ValueError, match=r"noise_sigma 25 is on the wrong scale.*0\.\.1.*25/255"):
        ksvd_denoise(noisy, 25, n_atoms=16, n_iterations=1, training_patches=200)


def test_ksvd_denoise_refuses_a_0_255_image(noisy):
    with pytest.raises(ValueError, match=r"values span .*0\.\.1 scale"):
        ksvd_denoise(noisy * 255, 25 / 255, n_atoms=16, n_iterations=1, training_patches=200)


def test_wiener_refuses_a_0_255_sigma(noisy):
    with pytest.raises(ValueError, match="noise_sigma 25 is on the wrong scale"):
        collaborative_wiener(noisy, noisy, 25)


def test_tv_refuses_weight_and_sigma_on_other_scales(noisy):
    with pytest.raises(ValueError, match=r"weight 20 is on the wrong scale.*0\.03-0\.3"):
        tv_denoise(noisy, 20)
    with pytest.raises(ValueError, match="sigma 15 is on the wrong scale"):
        tv_denoise(noisy, "auto", sigma=15)
    with pytest.raises(ValueError, match="values span"):
        tv_denoise(noisy * 255, 0.1)


def test_inpaint_refuses_0_255_thresholds_and_images(noisy):
    missing = np.zeros(noisy.shape, bool)
    missing[10:14, 10:14] = True
    with pytest.raises(ValueError, match="threshold_start 60 is on the wrong scale"):
        inpaint(noisy, missing, threshold_start=60, learn_iterations=0)
    with pytest.raises(ValueError, match="values span"):
        inpaint(np.clip(noisy, 0, 1) * 255, missing, learn_iterations=0)


def test_values_on_the_right_scale_still_work(noisy):
    # A noisy image may overshoot 0..1 by a few sigma: that is not another scale.
    assert tv_denoise(noisy * 1.3, 0.1).image.shape == noisy.shape


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--weight", "25"], "above 1"), (["--sigma", "300"], "above 255")],
)
def test_cli_refuses_out_of_scale_options(tmp_path, grey_png, arguments, message):
    result = CliRunner().invoke(cli, ["tv-denoise", str(grey_png), "-o", str(tmp_path / "out.png"), *arguments])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out.png").exists()
