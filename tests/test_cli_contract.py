"""The command-line contract a new user meets: output options follow one rule,
options without effect are usage errors, lossy writes and rough thresholds say
so in one warning line, and -q means errors only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from spmcli.cli import cli
from spmcli.io.images import read_image, write_image

RUN_FAST = ["--n-atoms", "16", "--iters", "1", "--max-patches", "500"]


def texture(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = 120 + 60 * np.sin(cols / 3.0 + seed) * np.cos(rows / 5.0) + 10 * rng.standard_normal((size, size))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for index in range(4):
        Image.fromarray(texture(index)).save(images / f"img_{index}.png")
    return images


def invoke(*arguments: object):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


# --- one rule for every output option: missing folders are created before any work ---------------


@pytest.mark.parametrize(
    "build",
    [
        lambda images, out: ["learn-dict", images, "-o", out / "new" / "sub" / "d.npz", *RUN_FAST],
        lambda images, out: [
            "learn-dict",
            images,
            "-o",
            out / "d.npz",
            "--atoms-png",
            out / "new" / "atoms.png",
            *RUN_FAST,
        ],
        lambda images, out: ["tv-denoise", images / "img_0.png", "-o", out / "new" / "sub" / "t.png"],
        lambda images, out: [
            "tv-denoise",
            images,
            "--output-dir",
            out / "new" / "dir",
            "--report",
            out / "reports" / "r.json",
        ],
        lambda images, out: [
            "reconstruct",
            images / "img_0.png",
            "-o",
            out / "r.png",
            "--sigma",
            "10",
            "--report",
            out / "new" / "r.json",
        ],
        lambda images, out: [
            "inpaint",
            images,
            "--missing-value",
            "0",
            "--output-dir",
            out / "new" / "filled",
            "--report",
            out / "deep" / "er" / "r.json",
            "--passes",
            "2",
            "--learn-iters",
            "0",
        ],
    ],
)
def test_missing_output_folders_are_created_up_front(folder, tmp_path, build):
    result = invoke(*build(folder, tmp_path))
    assert result.exit_code == 0, result.output
    written = [path for path in tmp_path.rglob("*") if path.is_file() and "images" not in path.parts]
    assert written and not [path for path in written if ".part" in path.name]


@pytest.mark.parametrize(
    ("build", "option"),
    [
        (lambda images, blocker: ["learn-dict", images, "-o", blocker / "d.npz", *RUN_FAST], "-o"),
        (lambda images, blocker: ["tv-denoise", images, "--output-dir", blocker / "out"], "--output-dir"),
        (
            lambda images, blocker: [
                "tv-denoise",
                images,
                "--output-dir",
                images.parent / "o",
                "--report",
                blocker / "r.json",
            ],
            "--report",
        ),
        (
            lambda images, blocker: [
                "learn-dict",
                images,
                "-o",
                images.parent / "d.npz",
                "--atoms-png",
                blocker / "a.png",
                *RUN_FAST,
            ],
            "--atoms-png",
        ),
    ],
)
def test_an_output_folder_that_cannot_exist_is_a_usage_error_before_any_work(folder, tmp_path, build, option):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    result = invoke(*build(folder, blocker))
    assert result.exit_code == 2, result.output
    assert option in result.output and f"{blocker} exists and is not a folder" in result.output
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and path.parent != folder and path != blocker]


def test_an_output_file_that_is_a_folder_is_a_usage_error(folder, tmp_path):
    (tmp_path / "report.json").mkdir()
    result = invoke("tv-denoise", folder, "--output-dir", tmp_path / "out", "--report", tmp_path / "report.json")
    assert result.exit_code == 2 and "is a directory" in result.output


# --- options that would have no effect --------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["learn-dict", "{images}", "-o", "{out}/d.npz", "--mode", "aligned"], "--mode only applies with --detector"),
        (
            ["learn-dict", "{images}", "-o", "{out}/d.npz", "--blur-sigma", "1"],
            "--blur-sigma only applies with --detector",
        ),
        (
            ["learn-dict", "{images}", "-o", "{out}/d.npz", "--polarity", "dark", "--downscale", "1"],
            "--polarity, --downscale only apply with --detector",
        ),
        (["learn-dict", "{images}", "-o", "{out}/d.npz", "--detector", "--tol", "3"], "--tol cannot be used"),
        (["learn-dict", "{images}", "-o", "{out}/d.npz", "--detector", "--keep-mean"], "no effect with --detector"),
        (
            [
                "learn-dict",
                "{images}",
                "-o",
                "{out}/d.npz",
                "--calibration-images",
                "{images}",
                "--calibration-share",
                "0.5",
            ],
            "--calibration-share has no effect with --calibration-images",
        ),
        (["reconstruct", "{images}", "--output-dir", "{out}", "--sparsity", "3"], "--sparsity has no effect"),
        (
            ["reconstruct", "{images}", "--output-dir", "{out}", "--dict", "{dict}", "--n-atoms", "64"],
            "--n-atoms has no effect with --dict",
        ),
        (
            ["reconstruct", "{images}", "--output-dir", "{out}", "--dict", "{dict}", "--sparsity", "2", "--wiener"],
            "--wiener has no effect with --dict --sparsity and no --sigma",
        ),
        (
            ["tv-denoise", "{images}", "--output-dir", "{out}", "--weight", "0.1", "--sigma", "10"],
            "--sigma has no effect with a given --weight",
        ),
        (
            ["tv-denoise", "{images}", "--output-dir", "{out}", "--method", "bregman", "--separate-channels"],
            "--separate-channels has no effect with --method bregman",
        ),
        (
            [
                "inpaint",
                "{images}",
                "--missing-value",
                "0",
                "--output-dir",
                "{out}",
                "--dict",
                "{dict}",
                "--learn-iters",
                "2",
            ],
            "--learn-iters has no effect with --dict",
        ),
        (["detect", "{images}", "--dict", "{dict}", "--skip-existing"], "--skip-existing needs per-image outputs"),
    ],
)
def test_an_option_without_effect_is_a_usage_error(folder, tmp_path, arguments, message):
    from spmcli.sparse.dictionary import Dictionary, dct_dictionary, save_dictionary

    dictionary = tmp_path / "dct.npz"
    save_dictionary(Dictionary(dct_dictionary(8, 64), 8), dictionary)
    values = {"images": folder, "out": tmp_path / "out", "dict": dictionary}
    result = invoke(*[argument.format(**values) for argument in arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "out" / "d.npz").exists()


def test_many_atoms_from_few_patches_warns_once(folder, tmp_path):
    result = invoke("learn-dict", folder, "-o", tmp_path / "d.npz", "--n-atoms", "512", "--max-patches", "500",
                    "--iters", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "512 atoms learned from 500 training patches" in warnings[0]
    quiet = invoke("-q", "learn-dict", folder, "-o", tmp_path / "e.npz", "--n-atoms", "512", "--max-patches", "500",
                   "--iters", "1")  # fmt: skip
    assert quiet.exit_code == 0 and quiet.output == ""


# --- lossy writes say so ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "alpha", "extension", "message"),
    [
        ("uint16", False, ".jpg", "JPEG has no 16-bit samples: the output is written as 8-bit"),
        ("uint8", True, ".jpg", "JPEG has no alpha channel"),
        ("float32", False, ".png", "PNG has no float samples: the output is written as 16-bit"),
    ],
)
def test_a_lossy_output_format_gives_one_warning_line(tmp_path, dtype, alpha, extension, message):
    pixels = texture(1).astype(np.float64) / 255
    if alpha:
        pixels = np.dstack([pixels, pixels, pixels])
    source = tmp_path / ("in.tif" if dtype != "uint8" else "in.png")
    write_image(source, pixels, dtype=dtype, alpha=np.ones(pixels.shape[:2]) if alpha else None)
    output, report = tmp_path / f"out{extension}", tmp_path / "r.json"
    result = invoke("tv-denoise", source, "-o", output, "--sigma", "10", "--report", report)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and message in warnings[0] and str(source) in warnings[0]
    assert read_image(output).pixels.shape[:2] == (48, 48)
    record = json.loads(report.read_text())["records"][0]
    assert record["warnings"] == [warnings[0].split(f"{source}: ", 1)[1]]


def test_a_lossless_write_says_nothing(folder, tmp_path):
    result = invoke("tv-denoise", folder, "--output-dir", tmp_path / "out", "--sigma", "10")
    assert result.exit_code == 0 and "Warning" not in result.output


# --- detector calibration and quiet mode ------------------------------------------------------------


def test_fewer_than_three_calibration_images_are_refused(folder, tmp_path):
    result = invoke("learn-dict", folder, "-o", tmp_path / "m.npz", "--detector", *RUN_FAST)
    assert result.exit_code == 2, result.output  # 4 good images: a quarter held out is 1 image
    assert "1 calibration image(s): a threshold needs at least 3" in result.output
    assert not (tmp_path / "m.npz").exists()


def test_under_twenty_calibration_images_warn_that_the_threshold_is_rough(folder, tmp_path):
    # Copies, so that the calibration images are not the ones learned from (which warns too).
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for image in sorted(folder.glob("*.png")):
        shutil.copy(image, calibration / image.name)
    result = invoke("learn-dict", folder, "-o", tmp_path / "m.npz", "--calibration-images", calibration, *RUN_FAST)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "only 4 calibration images" in warnings[0] and "rough" in warnings[0]
    assert "Learned a pooled detector" in result.output


def test_an_aligned_detector_is_named_with_an(folder, tmp_path):
    result = invoke("learn-dict", folder, "-o", tmp_path / "m.npz", "--calibration-images", folder, "--mode", "aligned",
                    *RUN_FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Learned an aligned detector" in result.output


def test_quiet_detect_prints_errors_only(folder, tmp_path):
    model = tmp_path / "m.npz"
    assert invoke("learn-dict", folder, "-o", model, "--calibration-images", folder, *RUN_FAST).exit_code == 0
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    completed = subprocess.run(
        [sys.executable, "-m", "spmcli", "-q", "detect", str(folder), "--dict", str(model), "--threshold", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 3
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert lines and all(line.startswith(("Error:", "  ")) for line in lines), lines
    assert not any("anomaly:" in line for line in lines)


def test_report_records_are_complete_outputs(folder, tmp_path):
    result = invoke("tv-denoise", folder, "--output-dir", tmp_path / "out", "--sigma", "10")
    assert result.exit_code == 0
    for path in (tmp_path / "out").iterdir():
        assert read_image(path).pixels.shape == (48, 48)


def test_spmcli_pictures_in_an_input_folder_are_never_scored(folder, tmp_path):
    model = tmp_path / "m.npz"
    assert invoke("learn-dict", folder, "-o", model, "--calibration-images", folder, *RUN_FAST).exit_code == 0
    for run in range(2):
        result = invoke("detect", folder, "--dict", model, "--heatmap-dir", folder, "--report", tmp_path / "r.json")
        assert result.exit_code == 0, result.output
        records = json.loads((tmp_path / "r.json").read_text())["records"]
        assert [Path(record["input"]).name for record in records] == [f"img_{index}.png" for index in range(4)]
        if run:
            assert "Left out 8 file(s) written by spmcli" in result.output
    # A user's own file that merely has such a name is still an input.
    Image.fromarray(texture(9)).save(folder / "part_overlay.png")
    result = invoke("detect", folder, "--dict", model, "--report", tmp_path / "r.json")
    assert len(json.loads((tmp_path / "r.json").read_text())["records"]) == 5


@pytest.mark.parametrize("command", cli.list_commands(click.Context(cli)))
def test_help_text_is_printed_as_written(command):
    # Click does not %-format help strings: a "%%" written for argparse shows as is.
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert f" {command} [OPTIONS]" in result.output.splitlines()[0]
    assert "%%" not in result.output
