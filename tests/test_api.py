import subprocess
import sys

import spmcli


def test_every_public_name_resolves():
    for name in spmcli.__all__:
        assert getattr(spmcli, name) is not None, name


def test_importing_spmcli_stays_light():
    # The command line must start fast: importing the package loads no numeric module.
    code = "import sys, spmcli; print(sorted(m for m in sys.modules if m.startswith(('scipy', 'sklearn', 'skimage'))))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and completed.stdout.strip() == "[]"


def test_commands_start_without_scipy_stats():
    # scipy.stats costs 0.7-1.5 s to import on these machines: `spmcli --help`
    # loads every command, and none may pay for it before it runs (the
    # solvers that need it, through skimage.restoration, import it when called).
    names = ("reconstruct", "inpaint", "tv_denoise", "learn_dict", "detect", "report")
    modules = ", ".join(f"spmcli.commands.{name}" for name in names)
    code = f"import sys, spmcli.cli, {modules}; print('scipy.stats' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
