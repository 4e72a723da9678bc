"""The fast tier (`pytest -m fast`, docs/tests.md) is what a developer runs before each commit:
it must go on holding the units and contracts, and the checks that keep it fast must bite.
(Full tier only: each test here collects or runs the suite in a child pytest.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from edge_fer.core.paths import PROJECT_ROOT as ROOT
from testkit.programs import child_env

# The tier holds 488 tests; losing a tenth of them is a change to notice (a module that lost
# its mark, a fixture grown slow), not drift.
FAST_FLOOR = 440


def _pytest(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=child_env(env),
    )


def test_the_fast_tier_still_holds_the_units_and_contracts():
    done = _pytest("--collect-only", "-q", "-m", "fast")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fast = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(fast) >= FAST_FLOOR, f"the fast tier holds {len(fast)} tests, fewer than {FAST_FLOOR}"
    assert not any("test_tiers.py" in node for node in fast)


def _suite(folder: Path, body: str) -> Path:
    """A throwaway test module beside a copy of this suite's conftest, in `folder`."""
    tests = folder / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tests / "test_sample.py").write_text(textwrap.dedent(body))
    return tests


def test_a_slow_test_marked_fast_fails_the_fast_tier_by_name(tmp_path):
    tests = _suite(
        tmp_path,
        """
        import os
        import time

        import pytest

        pytestmark = pytest.mark.fast


        def test_quick():
            pass


        def test_sleeps():  # twice the limit, stretched as the guard stretches it on a busy machine
            time.sleep(0.6 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1)))
        """,
    )
    done = _pytest("-q", "-m", "fast", str(tests), cwd=tmp_path, EDGE_FER_FAST_LIMIT_S="0.3")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "test_sample.py::test_sleeps is marked fast but its call took" in done.stdout
    assert "1 failed, 1 passed" in done.stdout and "fast tier: " in done.stdout
    # the same test outside the fast tier's run passes: the limit is the tier's
    assert _pytest("-q", str(tests), cwd=tmp_path).returncode == 0


def test_fast_and_slow_together_or_a_heavy_fixture_stop_the_run_at_collection(tmp_path):
    tests = _suite(
        tmp_path,
        """
        import pytest


        @pytest.mark.fast
        @pytest.mark.slow
        def test_both():
            pass
        """,
    )
    done = _pytest("-q", "-m", "fast", str(tests), cwd=tmp_path)
    assert done.returncode != 0 and "is marked both fast and slow" in done.stdout + done.stderr
    (tests / "test_sample.py").write_text(
        "import pytest\n\n\n@pytest.mark.fast\ndef test_trains(quick_run):\n    pass\n"
    )
    done = _pytest("-q", "-m", "fast", str(tests), cwd=tmp_path)
    assert done.returncode != 0 and "is marked fast but uses quick_run" in done.stdout + done.stderr


def test_a_test_that_leaves_a_folder_in_the_current_folder_fails_naming_it(tmp_path):
    tests = _suite(
        tmp_path,
        """
        import os


        def test_litters():
            os.mkdir("left-behind")
        """,
    )
    done = _pytest("-q", str(tests), cwd=tmp_path)
    assert done.returncode == 1 and "left-behind" in done.stdout, done.stdout[-3000:]
