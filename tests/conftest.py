"""Shared fixtures: small synthetic images written in every supported format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def smooth_texture(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    """A deterministic grey image in [0, 1] with edges and texture."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = 0.5 + 0.25 * np.sin(cols / 5.0) * np.cos(rows / 7.0)
    image[: height // 2, : width // 3] += 0.2
    image += 0.02 * rng.standard_normal((height, width))
    return np.clip(image, 0.0, 1.0)


@pytest.fixture
def grey_png(tmp_path: Path) -> Path:
    path = tmp_path / "grey.png"
    Image.fromarray(np.rint(smooth_texture() * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        array = np.rint(smooth_texture(48, 56, seed=index) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"img_{index}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder
