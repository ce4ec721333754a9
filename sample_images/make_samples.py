"""Regenerate the bundled sample images from scikit-image's data (all CC0 or
public domain; see SOURCES.md). Run from the repository root:

    python sample_images/make_samples.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data, transform

HERE = Path(__file__).parent


def save(array: np.ndarray, name: str) -> None:
    path = HERE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=True)


def main() -> None:
    # Denoising / reconstruction / TV demo images.
    camera = transform.resize(data.camera(), (256, 256), anti_aliasing=True, preserve_range=True)
    save(np.rint(camera).astype(np.uint8), "camera.png")
    coffee = data.coffee()[40:340, 100:500]
    coffee = transform.resize(coffee, (150, 200), anti_aliasing=True, preserve_range=True)
    save(np.rint(coffee).astype(np.uint8), "coffee.png")

    # Defect detection: 128x128 crops of a brick texture, good and with drawn defects.
    brick = data.brick()
    crops = [brick[row : row + 128, col : col + 128] for row in range(0, 512, 128) for col in range(0, 512, 128)]
    # Good crops overlap by half (the detector wants a few dozen good images), and stay
    # clear of the incoming crops (rows 256-383 from column 256 on, and rows 384-511).
    good = [
        brick[row : row + 128, col : col + 128]
        for row in range(0, 257, 64)
        for col in range(0, 385, 64)
        if row <= 128 or col <= 128
    ]
    for index, crop in enumerate(good):
        save(crop, f"detect/good/brick_{index:02d}.png")
    rng = np.random.default_rng(0)
    for index, crop in enumerate(crops[10:13]):
        save(crop, f"detect/incoming/ok_{index:02d}.png")
    scratched = Image.fromarray(crops[13].copy())
    ImageDraw.Draw(scratched).line([(20, 30), (100, 90)], fill=20, width=3)
    save(np.asarray(scratched), "detect/incoming/defect_scratch.png")
    blotch = crops[14].astype(float)
    yy, xx = np.mgrid[:128, :128]
    blotch *= 1.0 - 0.6 * np.exp(-((yy - 70) ** 2 + (xx - 50) ** 2) / (2 * 12.0**2))
    save(np.rint(blotch).astype(np.uint8), "detect/incoming/defect_blotch.png")
    spots = crops[15].copy()
    for _ in range(6):
        row, col = rng.integers(10, 118, size=2)
        spots[row - 3 : row + 3, col - 3 : col + 3] = 255
    save(spots, "detect/incoming/defect_spots.png")

    # Inpainting: the camera image with a scribbled text mask (white = missing).
    mask = Image.new("L", (256, 256), 0)
    draw = ImageDraw.Draw(mask)
    for row, text in enumerate(["SPARSE", "MODELS", "FILL IN"]):
        draw.text((30, 40 + 60 * row), text, fill=255, font_size=40)
    draw.line([(10, 240), (246, 200)], fill=255, width=4)
    save(np.asarray(mask), "inpaint/camera_mask.png")


def inpaint_dropped_pixels() -> None:
    """The coffee image with half of its pixels dropped to black (for --missing-value 0)."""
    coffee = np.asarray(Image.open(HERE / "coffee.png")).copy()
    dropped = np.random.default_rng(0).random(coffee.shape[:2]) < 0.5
    coffee[dropped] = 0
    save(coffee, "inpaint/coffee_dropped.png")


if __name__ == "__main__":
    main()
    inpaint_dropped_pixels()
