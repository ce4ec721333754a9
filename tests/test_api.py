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
