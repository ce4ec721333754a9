"""The allocator setting for tasks: large temporaries stay on the heap when the
environment (a Dask worker's MALLOC_TRIM_THRESHOLD_) has fixed glibc's thresholds.

Counted in page faults, not timed: with the threshold fixed at 64 KiB every
freed 4 MB temporary goes back to the system and faults in again when the next
one is allocated; within ``numeric_allocation`` it is reused.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource
import numpy as np
from spmcli._allocator import numeric_allocation

def faults(rounds=100):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        temporary = np.ones(512 * 1024)  # 4 MB, written: every page touched
        del temporary
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

outside = faults()
with numeric_allocation():
    inside = faults()
after = faults()
print(outside, inside, after)
"""


def run_probe(**environment: str) -> tuple[int, int, int]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], env=env | environment, capture_output=True, text=True, check=True
    )
    outside, inside, after = (int(value) for value in completed.stdout.split())
    return outside, inside, after


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_fixed_trim_threshold_no_longer_refaults_temporaries_inside_tasks():
    outside, inside, after = run_probe(MALLOC_TRIM_THRESHOLD_="65536")
    pages_per_round = 4 * 1024 * 1024 // 4096
    assert outside > 20 * pages_per_round  # the environment's setting: fresh pages every time
    assert inside < 5 * pages_per_round  # reused heap memory
    assert after > 20 * pages_per_round  # the environment's setting is back after the block


def test_without_such_a_variable_temporaries_are_reused_in_and_after_the_block():
    _first_rounds, inside, after = run_probe()
    pages_per_round = 4 * 1024 * 1024 // 4096
    # glibc's dynamic threshold already keeps the temporaries (after the first rounds).
    assert inside < 5 * pages_per_round
    assert after < 5 * pages_per_round
