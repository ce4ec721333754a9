"""Reading and writing images (IMAGES arguments are expanded by
:mod:`spmcli.io.finding`).

Reading gives float64 pixels: integer images are scaled to [0, 1] (uint8 by
255, uint16 by 65535); float TIFFs are taken as they are (on the 0..1 scale by
convention) and must be finite. Colour stays as channels last; an alpha channel
is kept apart (:attr:`Image.alpha`) and written back unchanged; palette and
other modes become RGB or RGBA. Writing converts back to the input's dtype
and layout, atomically (a temporary file in the target folder, then a rename).

The pixel count is read from the file's header and checked against a limit
before any pixel is decoded.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..errors import ImageReadError, ImageWriteError
from .atomic import atomic_path

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "OUTPUT_MARKER",
    "Image",
    "read_image",
    "write_image",
    "image_format",
    "probe_image",
    "to_dtype",
    "to_grey",
]

DEFAULT_MAX_PIXELS = 200_000_000
# The "Software" text of spmcli's own pictures (heatmaps, overlays, masks): never taken as inputs.
OUTPUT_MARKER = "spmcli inspection output"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_FORMAT_OF_EXTENSION = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
# Which dtypes each format stores; anything else is converted to the first.
_FORMAT_DTYPES = {
    "PNG": ("uint8", "uint16"),
    "JPEG": ("uint8",),
    "BMP": ("uint8",),
    "TIFF": ("uint8", "uint16", "float32", "float64"),
}
_INTEGER_SCALE = {"uint8": 255.0, "uint16": 65535.0}
_SAMPLE_NAMES = {"uint8": "8-bit", "uint16": "16-bit", "float32": "float", "float64": "float"}


@dataclass
class Image:
    """An image as the numeric core sees it, plus what is needed to write it back.

    Attributes
    ----------
    pixels : ndarray of float64, shape (H, W) or (H, W, 3)
        Grey or RGB values on the 0..1 scale.
    alpha : ndarray of float64, shape (H, W), or None
        Opacity, passed through untouched.
    dtype : str
        The file's sample type: ``"uint8"``, ``"uint16"``, ``"float32"`` or ``"float64"``.
    path : Path or None
        Where it was read from.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    dtype: str = "uint8"
    path: Path | None = None

    @property
    def n_channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else self.pixels.shape[2]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def data_range(self) -> float:
        """Largest possible sample value on the 0..1 scale (1 for every dtype)."""
        return 1.0


def image_format(head: bytes) -> str | None:
    """The image format ("PNG", "JPEG", "BMP", "TIFF") a file's first bytes
    announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _check_pixel_limit(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(f"image header declares {width} x {height} pixels", path)
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"image is {width} x {height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,} (raise it with --max-pixels)",
            path,
        )


def _head(path: Path) -> tuple[bytes, str]:
    """The first bytes of an image file and its format; ImageReadError for anything else."""
    if not path.exists():
        if path.is_symlink():
            raise ImageReadError(f"broken symbolic link (its target {os.readlink(path)} does not exist)", path)
        raise ImageReadError("no such file", path)
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file", path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError as error:
        raise ImageReadError(f"cannot read file: {error.strerror or error}", path) from None
    if not head:
        raise ImageReadError("empty file (0 bytes)", path)
    kind = image_format(head)
    if kind is None:
        raise ImageReadError("not an image file (not PNG, JPEG, TIFF or BMP)", path)
    return head, kind


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image:
    """Read an image file (PNG, JPEG, TIFF or BMP).

    Parameters
    ----------
    path : str or Path
    max_pixels : int or None
        Refuse images with more pixels than this, judged from the header
        before decoding. None disables the check.

    Returns
    -------
    Image

    Raises
    ------
    ImageReadError
        Missing, empty, truncated, corrupt, unsupported or too large files.
    """
    path = Path(path)
    head, kind = _head(path)
    if kind == "TIFF":
        pixels, alpha, dtype = _read_tiff(path, max_pixels)
    elif kind == "PNG" and len(head) >= 26 and head[24] == 16 and head[25] in (2, 6):
        # Pillow reads 16-bit colour PNG as 8-bit; decode it here to keep the precision.
        width, height = struct.unpack(">II", head[16:24])
        _check_pixel_limit(path, width, height, max_pixels)
        pixels, alpha, dtype = _read_png16_colour(path, max_pixels)
    else:
        pixels, alpha, dtype = _read_with_pillow(path, kind, max_pixels)
    return _finish(path, pixels, alpha, dtype)


def probe_image(path: str | Path, *, max_pixels: int | None = None) -> tuple[int, int]:
    """Width and height of an image file, from its header (no pixel is decoded).

    Raises
    ------
    ImageReadError
        When the file cannot be read, is not an image, or declares more than
        ``max_pixels`` pixels.
    """
    path = Path(path)
    kind = _head(path)[1]
    previous_limit = PILImage.MAX_IMAGE_PIXELS
    try:
        if kind == "TIFF":
            import tifffile

            with tifffile.TiffFile(path) as tiff:
                page = tiff.pages[0]
                width, height = int(page.shape[page.axes.index("X")]), int(page.shape[page.axes.index("Y")])
        else:
            PILImage.MAX_IMAGE_PIXELS = None  # our own limit applies, below
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with PILImage.open(path) as picture:
                    width, height = int(picture.width), int(picture.height)
                    if _exif_orientation(picture) >= 5:  # displayed turned by a quarter
                        width, height = height, width
    except Exception as error:  # any parser error means a bad header
        raise ImageReadError(f"corrupt {kind} file ({_describe(error)})", path) from None
    finally:
        PILImage.MAX_IMAGE_PIXELS = previous_limit
    _check_pixel_limit(path, width, height, max_pixels)
    return width, height


def _finish(path: Path, pixels: np.ndarray, alpha: np.ndarray | None, dtype: str) -> Image:
    if dtype in _INTEGER_SCALE:
        scale = _INTEGER_SCALE[dtype]
        pixels = pixels.astype(np.float64) / scale
        alpha = None if alpha is None else alpha.astype(np.float64) / scale
    else:
        pixels = pixels.astype(np.float64)
        if not np.all(np.isfinite(pixels)):
            raise ImageReadError("float image holds NaN or infinite values", path)
        alpha = None if alpha is None else alpha.astype(np.float64)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return Image(np.ascontiguousarray(pixels), alpha, dtype, path)


def _split_alpha(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if array.ndim == 3 and array.shape[2] in (2, 4):
        return array[:, :, :-1], array[:, :, -1]
    return array, None


def _read_with_pillow(path: Path, kind: str, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    previous_limit = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None  # we apply our own limit, from the header
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                picture = PILImage.open(path)
            except Exception as error:  # Pillow raises many types for bad bytes: all mean a bad file
                raise ImageReadError(f"corrupt {kind} file ({_describe(error)})", path) from None
            with picture:
                _check_pixel_limit(path, picture.width, picture.height, max_pixels)
                try:
                    picture.load()
                    array, dtype = _pillow_to_array(picture)
                    array = _upright(array, _exif_orientation(picture))
                except ImageReadError:
                    raise
                except Exception as error:
                    reason = _describe(error)
                    adjective = "truncated" if "truncat" in reason.lower() else "corrupt"
                    raise ImageReadError(f"{adjective} {kind} file ({reason})", path) from None
    finally:
        PILImage.MAX_IMAGE_PIXELS = previous_limit
    pixels, alpha = _split_alpha(array)
    return pixels, alpha, dtype


# EXIF orientation tag (cameras and phones store the sensor's rows and say how
# to turn them): every spmcli command works on, and writes, the image as it is
# displayed, so an output is never shown turned against its input.
_EXIF_ORIENTATION = 0x0112


def _exif_orientation(picture: PILImage.Image) -> int:
    """The EXIF orientation (1-8) of an open image; 1 (as stored) when absent or unreadable."""
    try:
        value = int(picture.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block does not make the pixels unreadable
        return 1
    return value if 1 <= value <= 8 else 1


# Per EXIF orientation: (transpose, flip the rows, flip the columns) to show it upright.
_UPRIGHT = {
    1: (False, False, False),
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """``array`` (rows, columns[, channels]) turned as EXIF ``orientation``
    says it is displayed (what Pillow's ``ImageOps.exif_transpose`` does)."""
    transpose, flip_rows, flip_columns = _UPRIGHT.get(orientation, _UPRIGHT[1])
    if transpose:
        array = np.swapaxes(array, 0, 1)
    if flip_rows:
        array = array[::-1]
    if flip_columns:
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


def _pillow_to_array(picture: PILImage.Image) -> tuple[np.ndarray, str]:
    mode = picture.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(picture), "uint8"
    if mode == "1":
        return np.asarray(picture.convert("L")), "uint8"
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in picture.info
        return np.asarray(picture.convert("RGBA" if has_alpha else "RGB")), "uint8"
    if mode.startswith("I;16"):
        return np.asarray(picture).astype(np.uint16), "uint16"
    if mode == "I":
        array = np.asarray(picture)
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise ImageReadError("32-bit integer images are not supported (values outside 0..65535)")
        return array.astype(np.uint16), "uint16"
    if mode == "F":
        return np.asarray(picture).astype(np.float32), "float32"
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        return np.asarray(picture.convert("RGBA" if mode in ("RGBa", "La") else "RGB")), "uint8"
    raise ImageReadError(f"unsupported image mode {mode!r}")


def _read_tiff(path: Path, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.pages:
                raise ImageReadError("TIFF file holds no image", path)
            page = tiff.pages[0]
            shape, axes = page.shape, page.axes
            count = _tiff_image_count(tiff)
            if count > 1:
                # Reading the first page alone would drop the others without a word.
                raise ImageReadError(
                    f"TIFF file holds {count} images (pages or a stack); spmcli reads one image a file: "
                    "save them as separate files",
                    path,
                )
            if "Y" not in axes or "X" not in axes:
                raise ImageReadError(f"unsupported TIFF layout (axes {axes})", path)
            _check_pixel_limit(path, shape[axes.index("X")], shape[axes.index("Y")], max_pixels)
            samples = int(np.prod(shape)) // max(1, shape[axes.index("X")] * shape[axes.index("Y")])
            if samples > 4:
                raise ImageReadError(f"unsupported TIFF layout: {samples} samples per pixel (axes {axes})", path)
            array = page.asarray()
    except ImageReadError:
        raise
    except Exception as error:  # tifffile raises many types for bad bytes: all mean a bad file
        raise ImageReadError(f"corrupt or truncated TIFF file ({_describe(error)})", path) from None
    if axes.startswith("S") and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageReadError(f"unsupported TIFF shape {array.shape} (axes {axes})", path)
    kind = array.dtype
    if kind == np.bool_:
        array, dtype = array.astype(np.uint8) * 255, "uint8"
    elif kind in (np.uint8, np.uint16) or kind in (np.float32, np.float64):
        dtype = kind.name
    elif kind == np.float16:
        array, dtype = array.astype(np.float32), "float32"
    else:
        raise ImageReadError(f"unsupported TIFF sample type {kind} (use 8/16-bit integers or float)", path)
    pixels, alpha = _split_alpha(array)
    return pixels, alpha, dtype


def _tiff_image_count(tiff) -> int:
    """The number of full-size images in a TIFF file: its pages and stacks
    (tifffile's series), not counting reduced-resolution pages (thumbnails,
    pyramid levels)."""
    count = 0
    for series in tiff.series:
        first = series.pages[0] if series.pages else None
        per_image = int(np.prod(first.shape)) if first is not None else 0
        count += int(np.prod(series.shape)) // per_image if per_image else 1
    return count


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- 16-bit colour PNG, which Pillow cannot hold ------------------------------------


def _paeth(left: np.ndarray, up: np.ndarray, up_left: np.ndarray) -> np.ndarray:
    estimate = left + up - up_left
    distance_left, distance_up, distance_up_left = (
        np.abs(estimate - left), np.abs(estimate - up), np.abs(estimate - up_left),
    )  # fmt: skip
    return np.where(
        (distance_left <= distance_up) & (distance_left <= distance_up_left),
        left,
        np.where(distance_up <= distance_up_left, up, up_left),
    )


def _read_png16_colour(path: Path, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    try:
        data = path.read_bytes()
        position, chunks, header = 8, [], None
        while position + 8 <= len(data):
            length, name = struct.unpack(">I4s", data[position : position + 8])
            body = data[position + 8 : position + 8 + length]
            if len(body) != length:
                raise ValueError("chunk runs past the end of the file")
            if name == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif name == b"IDAT":
                chunks.append(body)
            elif name == b"IEND":
                break
            position += 12 + length
        if header is None or not chunks:
            raise ValueError("missing IHDR or IDAT")
        width, height, bit_depth, colour_type, _, _, interlace = header
        if bit_depth != 16 or colour_type not in (2, 6):
            raise ValueError("inconsistent IHDR")
        _check_pixel_limit(path, width, height, max_pixels)
        if interlace:
            raise ImageReadError("interlaced 16-bit colour PNG is not supported (save it without interlacing)", path)
        channels = 3 if colour_type == 2 else 4
        bytes_per_pixel = 2 * channels
        stride = width * bytes_per_pixel
        # Never inflate more than the header promises (a compressed bomb stops here).
        raw = zlib.decompressobj().decompress(b"".join(chunks), height * (stride + 1))
        if len(raw) != height * (stride + 1):
            raise ValueError("image data is truncated")
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
        out = np.zeros((height, stride), dtype=np.int64)
        previous = np.zeros(stride, dtype=np.int64)
        for y in range(height):
            kind, line = rows[y, 0], rows[y, 1:].astype(np.int64)
            if kind == 0:
                current = line
            elif kind == 1:
                current = np.cumsum(line.reshape(width, bytes_per_pixel), axis=0).reshape(-1) % 256
            elif kind == 2:
                current = (line + previous) % 256
            elif kind in (3, 4):
                current = line.copy()
                for x in range(0, stride, bytes_per_pixel):
                    pixel = slice(x, x + bytes_per_pixel)
                    left = current[x - bytes_per_pixel : x] if x else np.zeros(bytes_per_pixel, np.int64)
                    if kind == 3:
                        predictor = (left + previous[pixel]) // 2
                    else:
                        up_left = previous[x - bytes_per_pixel : x] if x else np.zeros(bytes_per_pixel, np.int64)
                        predictor = _paeth(left, previous[pixel], up_left)
                    current[pixel] = (current[pixel] + predictor) % 256
            else:
                raise ValueError(f"unknown PNG filter type {kind}")
            out[y], previous = current, current
    except ImageReadError:
        raise
    except (ValueError, zlib.error, struct.error) as error:
        raise ImageReadError(f"corrupt or truncated PNG file ({_describe(error)})", path) from None
    samples = out.astype(np.uint8).reshape(height, width, channels, 2)
    array = (samples[..., 0].astype(np.uint16) << 8) | samples[..., 1]
    pixels, alpha = _split_alpha(array)
    return pixels, alpha, "uint16"


def _write_png16_colour(path: Path, array: np.ndarray, marker: str | None = None) -> None:
    height, width, channels = array.shape
    big_endian = array.astype(">u2").reshape(height, width * channels).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), big_endian], axis=1).tobytes()

    def chunk(name: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body) & 0xFFFFFFFF)

    colour_type = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        text = chunk(b"tEXt", b"Software\0" + marker.encode("latin-1")) if marker else b""
        handle.write(chunk(b"IHDR", header) + text + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """Grey values of a (H, W) or (H, W, C) image (ITU-R BT.601 luma for colour)."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] >= 3:
        return pixels[:, :, :3] @ np.array([0.299, 0.587, 0.114])
    return pixels[:, :, 0]


# --- writing -----------------------------------------------------------------------


def to_dtype(pixels: np.ndarray, dtype: str) -> np.ndarray:
    """Convert 0..1 float pixels to ``dtype`` (integers are clipped and rounded)."""
    if dtype in _INTEGER_SCALE:
        scale = _INTEGER_SCALE[dtype]
        return np.rint(np.clip(pixels, 0.0, 1.0) * scale).astype(dtype)
    return np.asarray(pixels, dtype=dtype)


def output_format(path: str | Path) -> str:
    """The file format chosen by an output path's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in _FORMAT_OF_EXTENSION:
        raise ImageWriteError(
            f"unknown output extension {suffix or '(none)'!r}; use one of {', '.join(IMAGE_EXTENSIONS)}", path
        )
    return _FORMAT_OF_EXTENSION[suffix]


def write_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    dtype: str = "uint8",
    alpha: np.ndarray | None = None,
    marker: str | None = None,
) -> str:
    """Write 0..1 float pixels to ``path`` atomically, in ``dtype`` where the format allows.

    A format that cannot hold ``dtype`` gets the closest it can (float to
    16-bit PNG, anything to 8-bit JPEG/BMP), and JPEG drops an alpha channel;
    each such loss raises one ``UserWarning`` saying what was lost. Returns
    the dtype written.

    ``marker`` (PNG and TIFF only) is stored as the file's "Software" text:
    :data:`OUTPUT_MARKER` marks spmcli's own pictures (heatmaps, overlays,
    masks), which :func:`spmcli.io.finding.find_images` then never takes as inputs.
    """
    path = Path(path)
    file_format = output_format(path)
    if dtype not in _FORMAT_DTYPES[file_format]:
        stored = "uint16" if file_format == "PNG" else "uint8"
        warnings.warn(
            f"{file_format} has no {_SAMPLE_NAMES[dtype]} samples: the output is written as "
            f"{_SAMPLE_NAMES[stored]} (use .tif to keep {_SAMPLE_NAMES[dtype]} samples)",
            UserWarning,
            stacklevel=2,
        )
        dtype = stored
    if alpha is not None and file_format == "JPEG":
        warnings.warn("JPEG has no alpha channel: the alpha channel is dropped (use .png to keep it)", UserWarning,
                      stacklevel=2)  # fmt: skip
    array = pixels if alpha is None else np.dstack([pixels, alpha])
    array = to_dtype(np.asarray(array), dtype)
    if not path.parent.is_dir():
        raise ImageWriteError("output folder does not exist", path.parent)
    try:
        with atomic_path(path) as temporary:
            if file_format == "TIFF":
                import tifffile

                photometric = "rgb" if array.ndim == 3 and array.shape[2] >= 3 else "minisblack"
                extrasamples = ("unassalpha",) if alpha is not None else None
                tifffile.imwrite(
                    temporary, array, photometric=photometric, extrasamples=extrasamples, software=marker or "tifffile"
                )
            elif dtype == "uint16" and array.ndim == 3:
                if array.shape[2] == 2:  # grey + alpha at 16 bits: store as RGBA
                    array = np.dstack([array[:, :, :1].repeat(3, axis=2), array[:, :, 1:]])
                _write_png16_colour(temporary, array, marker)
            else:
                picture = PILImage.fromarray(array)
                options: dict = {"quality": 95} if file_format == "JPEG" else {}
                if marker is not None and file_format == "PNG":
                    from PIL.PngImagePlugin import PngInfo

                    options["pnginfo"] = PngInfo()
                    options["pnginfo"].add_text("Software", marker)
                if file_format == "JPEG" and picture.mode in ("RGBA", "LA"):
                    picture = picture.convert("RGB" if picture.mode == "RGBA" else "L")
                picture.save(temporary, format=file_format, **options)
    except OSError as error:
        raise ImageWriteError(f"cannot write image: {error.strerror or error}", path) from None
    return dtype
