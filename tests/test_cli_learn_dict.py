import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from spmcli import __version__
from spmcli.cli import cli
from spmcli.sparse.dictionary import load_dictionary

FAST = ["--n-atoms", "32", "--iters", "2", "--max-patches", "1500"]


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "learn-dict" in result.output and "Exit codes" in result.output
    result = runner.invoke(cli, ["learn-dict", "--help"])
    assert result.exit_code == 0 and "spmcli learn-dict sample_images/" in result.output


def test_learn_dict_writes_a_loadable_dictionary_and_atoms_picture(runner, image_folder, tmp_path):
    output, picture = tmp_path / "d.npz", tmp_path / "atoms.png"
    result = runner.invoke(
        cli, ["learn-dict", str(image_folder), "-o", str(output), "--atoms-png", str(picture), *FAST, "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    assert "Learned 32 atoms (8x8, 1 channel(s))" in result.output
    dictionary = load_dictionary(output)
    assert dictionary.atoms.shape == (32, 64) and dictionary.patch_size == 8
    assert dictionary.metadata["seed"] == 4 and dictionary.metadata["n_training_images"] == 3
    assert dictionary.metadata["training_images"] == ["img_0.png", "img_1.png", "img_2.png"]
    assert len(dictionary.metadata["error_history"]) == 2
    assert Image.open(picture).size[0] >= 6 * 9


def test_learn_dict_options_reach_the_model(runner, grey_png, tmp_path):
    output = tmp_path / "d.npz"
    arguments = ["learn-dict", str(grey_png), "-o", str(output), "--patch-size", "6", "--n-atoms", "20"]
    arguments += ["--iters", "1", "--tol", "4", "--method", "approx", "--init", "data", "--keep-mean"]
    result = runner.invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    dictionary = load_dictionary(output)
    assert dictionary.atoms.shape == (20, 36)
    assert dictionary.preprocessing == "none"
    assert dictionary.metadata["method"] == "approx" and dictionary.metadata["tol"] == pytest.approx(4 / 255)


def test_a_bad_file_in_the_batch_is_reported_and_the_rest_is_used(runner, image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    output = tmp_path / "d.npz"
    result = runner.invoke(cli, ["learn-dict", str(image_folder), "-o", str(output), *FAST])
    assert result.exit_code == 3
    assert "Error: " in result.stderr and "broken.png: corrupt PNG file" in result.stderr
    assert "1 of 4 input(s) could not be processed" in result.stderr
    assert "Traceback" not in result.output
    assert load_dictionary(output).metadata["n_training_images"] == 3


def test_colour_and_grey_mix_needs_grayscale(runner, image_folder, tmp_path):
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(image_folder / "zcolour.png")
    result = runner.invoke(cli, ["learn-dict", str(image_folder), "-o", str(tmp_path / "a.npz"), *FAST])
    assert result.exit_code == 3 and "use --grayscale" in result.stderr
    result = runner.invoke(cli, ["learn-dict", str(image_folder), "-o", str(tmp_path / "b.npz"), "--grayscale", *FAST])
    assert result.exit_code == 0, result.output


def test_colour_dictionary(runner, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "c.png")
    result = runner.invoke(cli, ["learn-dict", str(tmp_path / "c.png"), "-o", str(tmp_path / "c.npz"), *FAST])
    assert result.exit_code == 0, result.output
    assert load_dictionary(tmp_path / "c.npz").atoms.shape == (32, 192)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["nothing_here/"], "no such file or folder"),
        (["{folder}/*.jpg"], "pattern matches no image files"),
        (["{folder}", "--n-atoms", "0"], "--n-atoms"),
        (["{folder}", "--method", "magic"], "--method"),
    ],
)
def test_usage_errors_exit_2(runner, image_folder, tmp_path, arguments, message):
    arguments = [argument.format(folder=image_folder) for argument in arguments]
    result = runner.invoke(cli, ["learn-dict", *arguments, "-o", str(tmp_path / "d.npz")])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "d.npz").exists()


def test_output_must_be_npz(runner, grey_png, tmp_path):
    result = runner.invoke(cli, ["learn-dict", str(grey_png), "-o", str(tmp_path / "d.png")])
    assert result.exit_code == 2 and ".npz" in result.output


def test_image_smaller_than_patch(runner, tmp_path):
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(tmp_path / "tiny.png")
    result = runner.invoke(cli, ["learn-dict", str(tmp_path / "tiny.png"), "-o", str(tmp_path / "d.npz")])
    assert result.exit_code == 3
    assert "image is 5 x 3 pixels, smaller than the 8 x 8 patch" in result.stderr
    assert not (tmp_path / "d.npz").exists()


def test_quiet_prints_nothing_on_success(runner, grey_png, tmp_path):
    result = runner.invoke(cli, ["-q", "learn-dict", str(grey_png), "-o", str(tmp_path / "d.npz"), *FAST])
    assert result.exit_code == 0 and result.output == ""


def test_subprocess_same_seed_gives_identical_file(image_folder, tmp_path):
    outputs = []
    for name in ("a.npz", "b.npz"):
        output = tmp_path / name
        completed = subprocess.run(
            [sys.executable, "-m", "spmcli", "learn-dict", str(image_folder), "-o", str(output), *FAST, "--seed", "9"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stderr == ""  # no progress bar when stderr is not a terminal
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
    assert load_dictionary(tmp_path / "a.npz").n_atoms == 32


def test_subprocess_error_has_no_traceback_unless_verbose(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    command = [sys.executable, "-m", "spmcli", "learn-dict", str(bad), "-o", str(tmp_path / "d.npz")]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 3
    assert completed.stderr.splitlines()[0] == f"Error: {bad}: empty file (0 bytes)"
    assert "Traceback" not in completed.stderr
    verbose = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, timeout=60)
    assert verbose.returncode == 3 and "Traceback" in verbose.stderr


def test_atoms_png_never_overwrites_an_input(runner, grey_png, tmp_path):
    before = grey_png.read_bytes()
    result = runner.invoke(
        cli, ["learn-dict", str(grey_png), "-o", str(tmp_path / "d.npz"), "--atoms-png", str(grey_png)]
    )
    assert result.exit_code == 2 and "refusing to overwrite" in result.output
    assert grey_png.read_bytes() == before and not (tmp_path / "d.npz").exists()
    result = runner.invoke(cli, ["learn-dict", str(grey_png), "-o", str(tmp_path / "d.npz"), "--atoms-png", "a.gif"])
    assert result.exit_code == 2 and "use the extension .png" in result.output


def test_an_unexpected_failure_in_one_input_does_not_stop_the_batch(runner, image_folder, tmp_path, monkeypatch):
    import spmcli.tasks.learn as learn_task_module

    real_read = learn_task_module.read_image

    def flaky_read(path, **options):
        if Path(path).name == "img_1.png":
            raise RuntimeError("decoder exploded")
        return real_read(path, **options)

    monkeypatch.setattr(learn_task_module, "read_image", flaky_read)
    output = tmp_path / "d.npz"
    result = runner.invoke(cli, ["learn-dict", str(image_folder), "-o", str(output), *FAST])
    assert result.exit_code == 3
    assert "img_1.png: unexpected failure: RuntimeError: decoder exploded" in result.stderr
    assert load_dictionary(output).metadata["n_training_images"] == 2


def test_detector_also_writes_the_atoms_picture(runner, image_folder, tmp_path):
    picture = tmp_path / "atoms.png"
    arguments = ["learn-dict", str(image_folder), "-o", str(tmp_path / "m.npz"), "--detector", "--atoms-png"]
    # Three calibration images at least: the folder's three images, used for training and calibration alike.
    calibration = ["--calibration-images", str(image_folder)]
    result = runner.invoke(cli, [*arguments, str(picture), "--n-atoms", "16", "--iters", "1", *calibration])
    assert result.exit_code == 0, result.output
    assert Image.open(picture).size[0] >= 4 * 9
