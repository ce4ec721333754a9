"""Every command against bad input, through a real subprocess.

Each case checks the contract of DESIGN.md / README "Errors and exit codes":
one ``Error:`` line naming the file and the cause, the documented exit code, no
traceback, the other inputs of a batch still processed, and no half-written or
temporary file left in the output folder.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from spmcli.io.images import read_image
from spmcli.sparse.dictionary import Dictionary, dct_dictionary, save_dictionary

pytestmark = pytest.mark.filterwarnings("ignore")


def texture(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = 120 + 60 * np.sin(cols / 3.0 + seed) * np.cos(rows / 5.0) + 10 * rng.standard_normal((size, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def png_chunk(name: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + name + body + struct.pack(">I", zlib.crc32(name + body))


def write_npz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    good = root / "good"
    good.mkdir()
    for index in range(3):
        Image.fromarray(texture(index)).save(good / f"good_{index}.png")
    calibration = root / "calibration"
    calibration.mkdir()
    for index in range(3, 6):
        Image.fromarray(texture(index)).save(calibration / f"calib_{index}.png")
    paths = {"root": root, "good": good, "good_file": good / "good_0.png", "calibration": calibration}

    def add(name: str) -> Path:
        paths[name.split(".")[0]] = root / name
        return root / name

    data = (good / "good_1.png").read_bytes()
    add("truncated.png").write_bytes(data[: len(data) // 2])
    add("empty.png").write_bytes(b"")
    add("text.png").write_text("this is not an image\n")
    Image.fromarray(np.array([[100, 0, 100]], np.uint8)).save(add("tiny.png"))
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(add("constant.png"))
    nan_image = np.full((40, 40), 0.5, np.float32)
    nan_image[3, 4] = np.nan
    tifffile.imwrite(add("nan.tif"), nan_image)
    tifffile.imwrite(add("int32.tif"), np.arange(1600, dtype=np.int32).reshape(40, 40))
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    add("huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
    )
    # Dictionaries: valid, foreign, corrupt, malicious (pickle), from the future, mismatched.
    save_dictionary(Dictionary(dct_dictionary(8, 64), 8, metadata={}), add("dict.npz"))
    save_dictionary(Dictionary(dct_dictionary(5, 30), 5, metadata={}), add("dict_patch5.npz"))
    save_dictionary(Dictionary(dct_dictionary(8, 64, 3), 8, n_channels=3, metadata={}), add("dict_rgb.npz"))
    write_npz(add("foreign.npz"), weights=np.ones(3))
    add("corrupt.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    write_npz(
        add("pickle.npz"),
        format_version=np.array(1),
        atoms=np.array([{"os.system": "echo owned"}], dtype=object),
        patch_size=np.array(8),
        n_channels=np.array(1),
        preprocessing=np.array("remove_mean"),
        metadata=np.array("{}"),
    )
    write_npz(
        add("future.npz"),
        format_version=np.array(99),
        atoms=dct_dictionary(8, 64),
        patch_size=np.array(8),
        n_channels=np.array(1),
        preprocessing=np.array("remove_mean"),
        metadata=np.array("{}"),
    )
    # Masks for inpainting.
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(add("mask.png"))
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(add("mask_wrong_shape.png"))
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(add("mask_all.png"))
    return paths


def spmcli(*arguments: object, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spmcli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_clean_failure(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error_lines, result.stderr
    text = "\n".join(error_lines)
    for fragment in fragments:
        assert fragment in text, (fragment, result.stderr)


def assert_no_partial_files(folder: Path) -> None:
    leftovers = [path.name for path in folder.rglob("*") if ".part" in path.name]
    assert not leftovers, leftovers


@dataclass
class Command:
    """How to run one command on one input image, writing into ``out``."""

    name: str
    build: callable
    writes_image: bool = True
    extra: dict = field(default_factory=dict)


COMMANDS = {
    "learn-dict": Command(
        "learn-dict",
        lambda image, out, files: [
            "learn-dict",
            image,
            "-o",
            out / "d.npz",
            "--n-atoms",
            "16",
            "--iters",
            "1",
            "--max-patches",
            "500",
        ],
        writes_image=False,
    ),
    "reconstruct": Command(
        "reconstruct", lambda image, out, files: ["reconstruct", image, "--output-dir", out, "--dict", files["dict"]]
    ),
    "tv-denoise": Command("tv-denoise", lambda image, out, files: ["tv-denoise", image, "--output-dir", out]),
    # The mask comes from the image itself (pixels equal to 0 are missing), so it always fits.
    "inpaint": Command(
        "inpaint", lambda image, out, files: ["inpaint", image, "--missing-value", "0", "-o", out / "filled.png"]
    ),
    "detect": Command(
        "detect",
        lambda image, out, files: ["detect", image, "--dict", files["detector"], "--report", out / "report.json"],
        writes_image=False,
    ),
}


@pytest.fixture(scope="module")
def detector(files) -> Path:
    path = files["root"] / "detector.npz"
    result = spmcli(
        "learn-dict", files["good"], "-o", path, "--detector", "--calibration-images", files["calibration"],
        "--n-atoms", "16", "--iters", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    files["detector"] = path
    return path


BAD_IMAGES = [
    ("truncated", "truncated"),
    ("empty", "empty file"),
    ("text", "not an image file"),
    ("int32", "unsupported TIFF sample type"),
    ("nan", "NaN or infinite"),
    ("huge", "above the limit"),
    ("tiny", "image is 3 x 1 pixels"),
]


@pytest.mark.parametrize("command_name", sorted(COMMANDS))
@pytest.mark.parametrize(("bad", "cause"), BAD_IMAGES)
def test_bad_image_gives_one_error_line_and_exit_3(files, detector, tmp_path, command_name, bad, cause):
    command = COMMANDS[command_name]
    arguments = command.build(files[bad], tmp_path, files)
    result = spmcli(*arguments)
    assert_clean_failure(result, 3, str(files[bad]), cause)
    assert_no_partial_files(tmp_path)
    if command.writes_image:
        assert not any(path.suffix == ".png" for path in tmp_path.iterdir())


@pytest.mark.parametrize("command_name", ["learn-dict", "reconstruct", "tv-denoise", "detect"])
def test_batch_with_one_bad_file_processes_the_rest(files, detector, tmp_path, command_name):
    batch = tmp_path / "batch"
    batch.mkdir()
    for path in sorted(files["good"].iterdir()):
        (batch / path.name).write_bytes(path.read_bytes())
    (batch / "zz_broken.png").write_bytes(files["truncated"].read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    result = spmcli(*COMMANDS[command_name].build(batch, out, files))
    assert_clean_failure(result, 3, "zz_broken.png")
    assert "1 of 4" in result.stderr
    assert_no_partial_files(out)
    if COMMANDS[command_name].writes_image:
        assert sorted(path.name for path in out.iterdir()) == ["good_0.png", "good_1.png", "good_2.png"]
        for path in out.iterdir():
            assert read_image(path).pixels.shape == (48, 48)


def test_learning_from_flat_images_is_a_clear_error(files, tmp_path):
    result = spmcli(*COMMANDS["learn-dict"].build(files["constant"], tmp_path, files))
    assert_clean_failure(result, 3, str(files["constant"]), "every training patch is constant")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command_name", ["reconstruct", "tv-denoise", "inpaint", "detect"])
def test_constant_image_works_and_gives_finite_output(files, detector, tmp_path, command_name):
    result = spmcli(*COMMANDS[command_name].build(files["constant"], tmp_path, files))
    assert result.returncode in (0, 1), result.stderr  # detect may call a flat image anomalous
    assert "Traceback" not in result.stderr
    for path in tmp_path.glob("*.png"):
        pixels = read_image(path).pixels
        assert np.all(np.isfinite(pixels))
        if command_name != "inpaint":
            assert np.abs(pixels * 255 - 128).max() <= 1


@pytest.mark.parametrize("command_name", ["reconstruct", "inpaint", "detect"])
@pytest.mark.parametrize(
    ("dictionary", "cause"),
    [
        ("foreign", "not an spmcli dictionary: missing"),
        ("corrupt", "not an spmcli dictionary"),
        ("pickle", "pickled objects, which are never loaded"),
        ("future", "newer than this spmcli"),
        ("text", "not an spmcli dictionary"),
    ],
)
def test_bad_dictionaries_are_refused(files, detector, tmp_path, command_name, dictionary, cause):
    local = dict(files, dict=files[dictionary], detector=files[dictionary])
    arguments = COMMANDS[command_name].build(files["good_file"], tmp_path, local)
    if command_name == "inpaint":
        arguments += ["--dict", files[dictionary]]
    result = spmcli(*arguments)
    assert_clean_failure(result, 3, str(files[dictionary]), cause)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command_name", ["reconstruct", "inpaint"])
def test_dictionary_for_other_channels_is_refused(files, tmp_path, command_name):
    arguments = {
        "reconstruct": ["reconstruct", files["good_file"], "-o", tmp_path / "x.png"],
        "inpaint": ["inpaint", files["good_file"], "--mask", files["mask"], "-o", tmp_path / "x.png"],
    }[command_name]
    result = spmcli(*arguments, "--dict", files["dict_rgb"])
    assert_clean_failure(result, 3, "channel")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command_name", ["reconstruct", "tv-denoise", "inpaint"])
def test_output_that_is_an_input_is_refused(files, tmp_path, command_name):
    source = tmp_path / "in.png"
    source.write_bytes(files["good_file"].read_bytes())
    before = source.read_bytes()
    arguments = {
        "reconstruct": ["reconstruct", source, "-o", source, "--dict", files["dict"]],
        "tv-denoise": ["tv-denoise", source, "-o", source],
        "inpaint": ["inpaint", source, "--mask", files["mask"], "-o", source],
    }[command_name]
    result = spmcli(*arguments)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert source.read_bytes() == before


@pytest.mark.parametrize("command_name", ["reconstruct", "tv-denoise"])
def test_unwritable_output_folder(files, tmp_path, command_name):
    blocker = tmp_path / "file_not_folder"
    blocker.write_text("x")
    result = spmcli(*COMMANDS[command_name].build(files["good_file"], blocker, files))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not a folder" in result.stderr or "is a file" in result.stderr
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(files, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = spmcli("tv-denoise", files["good_file"], "--output-dir", locked)
        assert_clean_failure(result, 3, "good_0.png")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("mask", "code", "cause"),
    [("mask_wrong_shape", 3, "mask"), ("mask_all", 3, "missing"), ("text", 3, "not an image file")],
)
def test_masks_that_do_not_fit(files, tmp_path, mask, code, cause):
    result = spmcli("inpaint", files["good_file"], "--mask", files[mask], "-o", tmp_path / "out.png")
    assert_clean_failure(result, code, cause)
    assert not (tmp_path / "out.png").exists()


def test_tiny_image_with_a_given_noise_level_is_denoised(files, tmp_path):
    # TV needs no patches: a 1 x 3 image works once the noise level is given.
    result = spmcli("tv-denoise", files["tiny"], "-o", tmp_path / "t.png", "--sigma", "10")
    assert result.returncode == 0, result.stderr
    pixels = read_image(tmp_path / "t.png").pixels
    assert pixels.shape == (1, 3) and np.all(np.isfinite(pixels))


@pytest.mark.parametrize("command_name", ["reconstruct", "tv-denoise", "inpaint"])
def test_report_carries_the_failure(files, tmp_path, command_name):
    import json

    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "a.png").write_bytes(files["good_file"].read_bytes())
    (batch / "b.png").write_bytes(b"")
    out, report = tmp_path / "out", tmp_path / "report.json"
    arguments = {
        "reconstruct": ["reconstruct", batch, "--output-dir", out, "--dict", files["dict"]],
        "tv-denoise": ["tv-denoise", batch, "--output-dir", out],
        "inpaint": ["inpaint", batch, "--missing-value", "0", "--output-dir", out],
    }[command_name]
    result = spmcli(*arguments, "--report", report)
    assert_clean_failure(result, 3, "b.png", "empty file")
    payload = json.loads(report.read_text())
    failures = [
        {"input": record["input"], "error": record["error"]}
        for record in payload["records"]
        if record["status"] == "failed"
    ]
    assert failures == [{"input": str(batch / "b.png"), "error": "empty file (0 bytes)"}]
    assert payload["counts"] == {"inputs": 2, "done": 1, "failed": 1, "skipped": 0, "not_started": 0}
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]
