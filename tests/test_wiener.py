"""Tests for collaborative Wiener filtering (spmcli.restoration.wiener)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from spmcli.metrics import psnr
from spmcli.restoration.collaborative import CollaborativeStep, collaborative_step
from spmcli.restoration.denoising import ksvd_denoise
from spmcli.restoration.wiener import collaborative_wiener


def periodic_texture(size: int = 64) -> np.ndarray:
    """A random 4x4 tile repeated: every patch has exact twins 4 pixels away."""
    tile = np.random.default_rng(0).uniform(0.2, 0.8, (4, 4))
    return np.tile(tile, (size // 4, size // 4))


def test_oracle_pilot_removes_most_of_the_noise():
    clean = periodic_texture()
    noisy = clean + np.random.default_rng(1).normal(0, 0.1, clean.shape)
    filtered = collaborative_wiener(noisy, clean, 0.1)
    assert filtered.shape == clean.shape
    # Averaging 8 exact twins alone divides the noise variance by 8 (+9 dB).
    assert psnr(clean, filtered) > psnr(clean, noisy) + 9.0


def test_improves_a_ksvd_pilot_on_a_natural_image():
    clean = data.camera()[::2, ::2][:128, :128] / 255.0
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
    settings = {"n_atoms": 64, "n_iterations": 4, "training_patches": 3000, "seed": 0}
    plain = ksvd_denoise(noisy, 25 / 255, wiener=False, **settings)
    with_wiener = ksvd_denoise(noisy, 25 / 255, **settings)
    assert with_wiener.settings["wiener"] is True
    assert psnr(clean, with_wiener.image) > psnr(clean, plain.image) + 0.2


def test_colour_image_is_filtered_jointly_and_helps():
    clean = data.astronaut()[:96, 150:246] / 255.0
    noisy = clean + np.random.default_rng(3).normal(0, 25 / 255, clean.shape)
    settings = {"n_atoms": 64, "n_iterations": 3, "training_patches": 3000, "seed": 0}
    plain = ksvd_denoise(noisy, 25 / 255, wiener=False, **settings)
    filtered = collaborative_wiener(noisy, plain.image, 25 / 255)
    assert filtered.shape == clean.shape
    assert psnr(clean, filtered) > psnr(clean, plain.image) + 0.3


@pytest.mark.parametrize("mode", ["hard", "wiener"])
def test_blocks_give_the_same_result(mode):
    # Memory is bounded by filtering blocks of references with a halo; the
    # matching tiles stay aligned, so the groups are the same but for
    # near-ties: distances come from float32 products whose rounding depends
    # on where a patch sits in its block, and with a noise-free pilot many
    # candidates are almost equally close (measured on an AMD EPYC: 93% of the
    # Wiener step's pixels differ by up to 0.0025, 0.00014 on average).
    clean = data.camera()[:120, :150] / 255.0
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    step = CollaborativeStep(mode, 8, 16, 10, 3, 0.02, 3.0 if mode == "hard" else 0.6, "dct")
    pilot = None if mode == "hard" else clean[:, :, None]
    whole = collaborative_step(noisy[:, :, None], 0.1, pilot, step)
    blocked = collaborative_step(noisy[:, :, None], 0.1, pilot, step, block_values=64 * 2000)
    assert np.mean(np.abs(blocked - whole)) < 5e-4
    assert abs(psnr(clean, blocked[:, :, 0]) - psnr(clean, whole[:, :, 0])) < 0.05  # at 43 dB


def test_noise_free_flat_image_is_unchanged():
    # The group mean passes unshrunk, so even a dark flat image keeps its level.
    for level in (0.02, 0.5):
        flat = np.full((40, 40), level)
        np.testing.assert_allclose(collaborative_wiener(flat, flat, 25 / 255), flat, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 8), (8, 13), (11, 8), (9, 9, 3)])
def test_tiny_images_have_too_few_neighbours_but_work(shape):
    rng = np.random.default_rng(0)
    clean = rng.uniform(0, 1, shape)
    filtered = collaborative_wiener(clean + rng.normal(0, 0.05, shape), clean, 0.05)
    assert filtered.shape == shape
    assert np.all(np.isfinite(filtered))


def test_bad_arguments_are_refused():
    image = np.zeros((16, 16))
    with pytest.raises(ValueError, match="differ in shape"):
        collaborative_wiener(image, np.zeros((16, 17)), 0.1)
    with pytest.raises(ValueError, match="positive"):
        collaborative_wiener(image, image, 0.0)
    with pytest.raises(ValueError, match="power of two"):
        collaborative_wiener(image, image, 0.1, max_group=24)
    with pytest.raises(ValueError, match="reference_stride"):
        collaborative_wiener(image, image, 0.1, reference_stride=9)
    with pytest.raises(ValueError, match="smaller than"):
        collaborative_wiener(np.zeros((5, 20)), np.zeros((5, 20)), 0.1)


def test_a_vanishing_sigma_leaves_the_image_alone():
    # sigma estimated as ~0 on a flat image must not turn into 0/0.
    flat = np.full((24, 24), 0.5)
    np.testing.assert_allclose(collaborative_wiener(flat, flat, 1e-30), flat, atol=1e-6)
