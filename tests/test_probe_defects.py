"""Probe defects drawn at learning time for the mode self-test."""

import numpy as np
import pytest
from scipy import ndimage

from spmcli.inspection.probe_defects import PROBE_KINDS, draw_probe_defect


def texture(shape=(120, 160)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(0.5 + 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 1.5) / 0.19, 0, 1)


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_each_kind_changes_a_part_of_the_image_within_range(kind):
    image = texture()
    probed = draw_probe_defect(image, kind, np.random.default_rng(1))
    assert probed.shape == image.shape and probed.dtype == np.float64
    assert probed.min() >= 0 and probed.max() <= 1
    changed = np.abs(probed - image) > 1e-3
    assert 0.001 < changed.mean() < 0.5
    assert np.array_equal(probed, draw_probe_defect(image, kind, np.random.default_rng(1)))
    assert np.array_equal(image, texture())  # the input is not changed


@pytest.mark.parametrize("kind", PROBE_KINDS)
def test_colour_images_get_the_same_defect_on_every_channel(kind):
    grey = texture()
    colour = np.stack([grey, 0.9 * grey, 0.8 * grey], axis=2)
    probed = draw_probe_defect(colour, kind, np.random.default_rng(2))
    assert probed.shape == colour.shape
    shares = (np.abs(probed - colour) > 1e-3).mean(axis=(0, 1))
    assert shares.min() > 0 and shares.max() < 2 * shares.min()


def test_lengths_follow_the_scale():
    image = texture((240, 320))
    small = np.abs(draw_probe_defect(image, "stain", np.random.default_rng(3)) - image) > 0.02
    large = np.abs(draw_probe_defect(image, "stain", np.random.default_rng(3), scale=2.0) - image) > 0.02
    assert 3.0 < large.sum() / small.sum() < 5.0  # area grows with the square of the scale


def test_missing_texture_is_flat_and_at_the_same_level():
    image = texture((200, 200))
    probed = draw_probe_defect(image, "missing_texture", np.random.default_rng(4))
    inside = np.abs(probed - image) > 1e-9
    assert probed[inside].std() < 0.5 * image[inside].std()
    assert abs(probed[inside].mean() - image[inside].mean()) < 0.05


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of line, spots, stain, missing_texture"):
        draw_probe_defect(texture(), "hole", np.random.default_rng(0))
