"""Hypothesis fuzzing: the image reader and the dictionary loader, fed random and
mutated bytes, raise only the project's own error type (or succeed)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from spmcli.errors import DictionaryFormatError, ImageReadError
from spmcli.io.images import read_image
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, load_dictionary, save_dictionary

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def encoded_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    colour = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    samples = {}
    for name, array, file_format in [
        ("grey.png", grey, "PNG"),
        ("colour.png", colour, "PNG"),
        ("colour.jpg", colour, "JPEG"),
        ("grey.bmp", grey, "BMP"),
    ]:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=file_format)
        samples[name] = buffer.getvalue()
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rng.random((12, 10)).astype(np.float32))
    samples["float.tif"] = buffer.getvalue()
    with tempfile.TemporaryDirectory() as folder:
        from spmcli.io.images import write_image

        path = Path(folder) / "rgb16.png"
        write_image(path, rng.random((12, 10, 3)), dtype="uint16")
        samples["rgb16.png"] = path.read_bytes()
    return samples


SAMPLES = encoded_images()


def dictionary_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        save_dictionary(Dictionary(dct_dictionary(4, 20), 4, metadata={"a": 1}), path)
        return path.read_bytes()


DICTIONARY = dictionary_bytes()


@st.composite
def mutated(draw, original: bytes):
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[position : position + len(chunk)] = chunk
    return bytes(data)


def read_bytes_as_image(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            image = read_image(path, max_pixels=10_000_000)
        except ImageReadError as error:
            assert str(path) in str(error)
            return
        assert np.all(np.isfinite(image.pixels))


@FUZZ
@given(st.binary(max_size=256))
def test_reader_on_random_bytes(data):
    read_bytes_as_image(data, "random.png")


@FUZZ
@given(st.sampled_from(sorted(SAMPLES)).flatmap(lambda name: st.tuples(st.just(name), mutated(SAMPLES[name]))))
def test_reader_on_mutated_images(case):
    name, data = case
    read_bytes_as_image(data, name)


def load_bytes_as_dictionary(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.npz"
        path.write_bytes(data)
        try:
            dictionary = load_dictionary(path)
        except DictionaryFormatError as error:
            assert str(path) in str(error)
            return
        assert np.all(np.isfinite(dictionary.atoms))


@FUZZ
@given(st.binary(max_size=256))
def test_loader_on_random_bytes(data):
    load_bytes_as_dictionary(data)


@FUZZ
@given(mutated(DICTIONARY))
def test_loader_on_mutated_dictionaries(data):
    load_bytes_as_dictionary(data)
