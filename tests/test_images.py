import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

from spmcli.errors import ImageReadError, ImageWriteError, SpmcliError
from spmcli.io.atomic import forget_written, written_paths
from spmcli.io.finding import find_images
from spmcli.io.images import probe_image, read_image, to_dtype, write_image

RNG = np.random.default_rng(0)
CASES = {
    "grey8.png": RNG.integers(0, 256, (13, 17), dtype=np.uint8),
    "rgb8.png": RNG.integers(0, 256, (13, 17, 3), dtype=np.uint8),
    "rgba8.png": RNG.integers(0, 256, (13, 17, 4), dtype=np.uint8),
    "grey16.png": RNG.integers(0, 65536, (13, 17), dtype=np.uint16),
    "rgb16.png": RNG.integers(0, 65536, (13, 17, 3), dtype=np.uint16),
    "rgba16.png": RNG.integers(0, 65536, (13, 17, 4), dtype=np.uint16),
    "grey8.tif": RNG.integers(0, 256, (13, 17), dtype=np.uint8),
    "rgb16.tif": RNG.integers(0, 65536, (13, 17, 3), dtype=np.uint16),
    "float32.tif": RNG.random((13, 17)).astype(np.float32),
    "float64rgb.tif": RNG.random((13, 17, 3)),
    "grey8.bmp": RNG.integers(0, 256, (13, 17), dtype=np.uint8),
    "rgb8.bmp": RNG.integers(0, 256, (13, 17, 3), dtype=np.uint8),
}


def write_reference(path, array):
    """Write with the reference libraries (not spmcli's writer)."""
    if path.suffix == ".tif":
        tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    elif array.dtype == np.uint16 and array.ndim == 3:
        write_image(path, array / 65535.0, dtype="uint16", alpha=None) if array.shape[2] == 3 else write_image(
            path, array[:, :, :3] / 65535.0, dtype="uint16", alpha=array[:, :, 3] / 65535.0
        )
    else:
        PILImage.fromarray(array).save(path)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_supported_dtype_round_trips(tmp_path, name):
    array = CASES[name]
    source = tmp_path / name
    write_reference(source, array)
    image = read_image(source)
    assert image.dtype == array.dtype.name
    channels = 1 if array.ndim == 2 else array.shape[2]
    assert image.n_channels + (image.alpha is not None) == channels
    if image.dtype.startswith("uint"):
        assert image.pixels.min() >= 0 and image.pixels.max() <= 1
    target = tmp_path / ("out_" + name)
    write_image(target, image.pixels, dtype=image.dtype, alpha=image.alpha)
    again = read_image(target)
    if array.dtype.kind == "f":
        np.testing.assert_array_equal(np.dstack([again.pixels]).squeeze(), array.astype(np.float64))
    else:
        stacked = again.pixels if again.alpha is None else np.dstack([again.pixels, again.alpha])
        np.testing.assert_array_equal(to_dtype(stacked, again.dtype), array)


def test_palette_and_bilevel_images_read_as_rgb_and_grey(tmp_path):
    palette = PILImage.fromarray(RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.pixels.shape == (10, 12, 3) and image.dtype == "uint8"
    PILImage.fromarray(RNG.integers(0, 2, (10, 12), dtype=np.uint8) * 255).convert("1").save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").pixels.shape == (10, 12)


def test_jpeg_reads_and_writes_8_bit(tmp_path):
    array = np.full((16, 16, 3), 120, np.uint8)
    PILImage.fromarray(array).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.dtype == "uint8" and abs(image.pixels.mean() * 255 - 120) < 2
    with pytest.warns(UserWarning, match="JPEG has no 16-bit samples"):
        assert write_image(tmp_path / "b.jpg", image.pixels, dtype="uint16") == "uint8"


def test_16_bit_colour_png_from_other_encoders_with_filters(tmp_path):
    # A 16-bit RGB PNG using every filter type, encoded by hand.
    height, width = 5, 4
    array = RNG.integers(0, 65536, (height, width, 3), dtype=np.uint16)
    raw = array.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int64)
    bpp = 6
    lines = []
    previous = np.zeros(raw.shape[1], np.int64)
    for row, kind in zip(raw, [0, 1, 2, 3, 4], strict=True):
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), previous[:-bpp]])
        if kind == 0:
            filtered = row
        elif kind == 1:
            filtered = row - left
        elif kind == 2:
            filtered = row - previous
        elif kind == 3:
            filtered = row - (left + previous) // 2
        else:
            p = left + previous - up_left
            pa, pb, pc = abs(p - left), abs(p - previous), abs(p - up_left)
            filtered = row - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, previous, up_left))
        lines.append(bytes([kind]) + (filtered % 256).astype(np.uint8).tobytes())
        previous = row

    def chunk(name, body):
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path = tmp_path / "filtered.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(lines)))
        + chunk(b"IEND", b"")
    )
    image = read_image(path)
    np.testing.assert_array_equal(to_dtype(image.pixels, "uint16"), array)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 10, "corrupt PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 10, "corrupt JPEG"),
        (b"II*\x00" + b"\x00" * 10, "TIFF"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as raised:
        read_image(path)
    assert str(path) in str(raised.value)


def test_truncated_png_is_reported(tmp_path):
    path = tmp_path / "t.png"
    PILImage.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"truncated|corrupt"):
        read_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_non_finite_float_tiff_is_refused(tmp_path):
    array = np.ones((8, 8), np.float32)
    array[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", array)
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(tmp_path / "nan.tif")


def test_a_tiff_of_several_images_is_refused_and_a_thumbnail_is_not(tmp_path):
    """Reading the first page of a stack would drop the others without a word."""
    image = RNG.random((16, 20)).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([image] * 5))
    tifffile.imwrite(tmp_path / "imagej.tif", (np.stack([image] * 4) * 255).astype(np.uint8), imagej=True)
    with tifffile.TiffWriter(tmp_path / "two.tif") as writer:
        writer.write(image)
        writer.write(image[:8, :8])
    for name, count in (("stack.tif", 5), ("imagej.tif", 4), ("two.tif", 2)):
        with pytest.raises(ImageReadError, match=f"TIFF file holds {count} images"):
            read_image(tmp_path / name)
    # A reduced-resolution page (a thumbnail) is not another image.
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as writer:
        writer.write(image)
        writer.write(image[::4, ::4], subfiletype=1)
    np.testing.assert_array_equal(read_image(tmp_path / "thumbnail.tif").pixels, image)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied_so_the_image_is_read_as_displayed(tmp_path, orientation, suffix):
    """A camera's JPEG stores the sensor's rows and an EXIF tag saying how to
    turn them; read otherwise, an output would be shown turned against its input."""
    stored = RNG.integers(0, 256, (10, 16, 3), dtype=np.uint8)
    picture = PILImage.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo{suffix}"
    picture.save(path, exif=exif.tobytes(), **({"quality": 95} if suffix == ".jpg" else {}))
    with PILImage.open(path) as reference:
        displayed = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
    image = read_image(path)
    assert image.pixels.shape == displayed.shape
    np.testing.assert_array_equal(np.rint(image.pixels * 255).astype(np.uint8), displayed)
    assert probe_image(path) == (displayed.shape[1], displayed.shape[0])


def test_a_broken_link_among_images_is_listed_and_refused_with_its_cause(tmp_path):
    PILImage.fromarray(RNG.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    (tmp_path / "alias.png").symlink_to(tmp_path / "good.png")
    listed = [path.name for path in find_images([str(tmp_path)])]
    assert listed == ["alias.png", "gone.png", "good.png"]
    assert [path.name for path in find_images([str(tmp_path / "g*.png")])] == ["gone.png", "good.png"]
    assert [path.name for path in find_images([str(tmp_path / "gone.png")])] == ["gone.png"]
    with pytest.raises(ImageReadError, match=r"broken symbolic link \(its target .*deleted.png does not exist\)"):
        read_image(tmp_path / "gone.png")
    assert read_image(tmp_path / "alias.png").pixels.shape == (8, 8)


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    # A PNG header claiming 100000 x 100000 pixels with no real data behind it.
    def chunk(name, body):
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)))
    with pytest.raises(ImageReadError, match="above the limit"):
        read_image(path)
    small = tmp_path / "small.png"
    PILImage.fromarray(np.zeros((20, 20), np.uint8)).save(small)
    with pytest.raises(ImageReadError, match="400 pixels, above the limit of 399"):
        read_image(small, max_pixels=399)
    assert read_image(small, max_pixels=400).pixels.shape == (20, 20)


def test_write_is_atomic_and_checks_the_extension(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old content")
    with pytest.raises(ImageWriteError, match="unknown output extension"):
        write_image(tmp_path / "out.xyz", np.zeros((4, 4)))
    write_image(target, np.full((4, 4), 0.5))
    assert read_image(target).pixels.shape == (4, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(ImageWriteError, match="folder does not exist"):
        write_image(tmp_path / "missing" / "x.png", np.zeros((4, 4)))


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PILImage.Image, "save", explode)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(tmp_path / "x.png", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_completed_writes_are_recorded_failed_ones_are_not(tmp_path, monkeypatch):
    forget_written()
    write_image(tmp_path / "a.png", np.zeros((4, 4)))
    assert written_paths() == {str(tmp_path / "a.png")}

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PILImage.Image, "save", explode)
    with pytest.raises(ImageWriteError):
        write_image(tmp_path / "b.png", np.zeros((4, 4)))
    assert written_paths() == {str(tmp_path / "a.png")}
    forget_written()
    assert written_paths() == frozenset()


def test_find_images_expands_folders_globs_and_files(image_folder):
    names = [p.name for p in find_images([str(image_folder)])]
    assert names == ["img_0.png", "img_1.png", "img_2.png"]
    globbed = find_images([str(image_folder / "img_[12].png"), str(image_folder / "img_1.png")])
    assert [p.name for p in globbed] == ["img_1.png", "img_2.png"]
    explicit = find_images([str(image_folder / "notes.txt")])
    assert [p.name for p in explicit] == ["notes.txt"]


@pytest.mark.parametrize("pattern", ["missing.png", "*.nothing", "emptydir"])
def test_find_images_refuses_arguments_that_match_nothing(tmp_path, pattern):
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(SpmcliError):
        find_images([str(tmp_path / pattern)])
