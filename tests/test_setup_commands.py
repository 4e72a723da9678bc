"""The README's two set-up commands, run as written in a shell where `sudo` is not on the PATH
(root in a container) and where it is (a user), with apt-get, python3 and the venv's programs
replaced by stubs that record their arguments; and .ci/run against the README's test command."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

RECORD = (
    '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$CALLS"\n'
    # FAIL_PROG=NAME: that program fails, as a pip without network or a broken build would
    + 'if [ "$(basename "$0")" = "${FAIL_PROG:-}" ]; then echo "$FAIL_PROG: simulated failure"; exit 3; fi\n'
)
# python3: `-m venv [FLAGS] DIR` makes DIR/bin with recording stubs; `-c` is the version check.
PYTHON3 = (
    RECORD
    + 'if [ "$1" = -c ]; then exit "${PY_TOO_OLD:-0}"; fi\n'
    + 'if [ "$1 $2" = "-m venv" ]; then for dir in "$@"; do :; done; mkdir -p "$dir/bin"; '
    + "for p in pip python ruff edge-fer edge-fer-build-runtime; do "
    + 'cp "$STUBS/record" "$dir/bin/$p"; done; fi\n'
)
SUDO = RECORD + 'exec "$@"\n'
ID = '#!/bin/sh\nif [ "$1" = -u ]; then echo 1000; else exec /usr/bin/id "$@"; fi\n'


def readme_commands() -> dict[str, str]:
    """The README's fenced bash commands that call scripts/setup.sh, by mode."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    found = {}
    for block in blocks:
        for line in block.strip().splitlines():
            m = re.match(r"scripts/setup\.sh (\w+) && ", line)
            if m:
                assert m[1] not in found, f"two README commands for setup.sh {m[1]}"
                found[m[1]] = line
    assert set(found) == {"daemon", "test"}, found
    return found


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _system_bin(tmp: Path) -> Path:
    """Every program of /usr/bin and /bin except sudo, apt-get, python3 and id."""
    out = tmp / "sysbin"
    out.mkdir()
    for folder in (Path("/usr/bin"), Path("/bin")):
        for prog in folder.iterdir():
            name = prog.name
            if name in ("sudo", "apt-get", "apt-cache", "id") or name.startswith("python3"):
                continue
            if not (out / name).exists():
                (out / name).symlink_to(prog)
    return out


def run_readme_command(
    tmp: Path, command: str, uid: int, sudo: bool, **env: str
) -> tuple[int, str, list[str]]:
    """Run one README line in a copy of the checkout's scripts as user `uid`, with or without
    a sudo on the PATH; returns its exit status, its stderr and the recorded calls."""
    rc, _, err, calls = run_setup(tmp, command, uid, sudo, **env)
    return rc, err, calls


def run_setup(tmp: Path, command: str, uid: int, sudo: bool, **env: str) -> tuple[int, str, str, list[str]]:
    """`run_readme_command`, also returning what it printed on stdout."""
    work = tmp / "checkout"
    (work / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup.sh", work / "scripts" / "setup.sh")
    stubs = tmp / "stubs"
    stubs.mkdir()
    # apt-cache: knows python3-picamera2 only on Raspberry Pi OS (PI_OS=1)
    apt_cache = RECORD + 'if [ "$1 $2" = "show python3-picamera2" ]; then [ "${PI_OS:-0}" = 1 ]; exit; fi\n'
    for name, text in {
        "record": RECORD,
        "apt-get": RECORD,
        "apt-cache": apt_cache,
        "python3": PYTHON3,
    }.items():
        _write(stubs / name, text)
    _write(stubs / "id", ID.replace("echo 1000", f"echo {uid}"))
    if sudo:
        _write(stubs / "sudo", SUDO)
    calls = tmp / "calls.txt"
    calls.touch()
    proc = subprocess.run(
        ["/bin/bash", "-c", command],
        cwd=work,
        env={
            "PATH": f"{stubs}:{_system_bin(tmp)}",
            "HOME": str(tmp),
            "CALLS": str(calls),
            "STUBS": str(stubs),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr, calls.read_text().splitlines()


def _apt_packages(calls: list[str]) -> list[str]:
    install = [c.split() for c in calls if c.startswith("apt-get install ")]
    assert len(install) == 1, calls
    return [w for w in install[0][2:] if not w.startswith("-")]


@pytest.mark.parametrize("as_user", [False, True], ids=["root-without-sudo", "user-with-sudo"])
@pytest.mark.parametrize("mode", ["daemon", "test"])
def test_readme_command_runs_as_written(tmp_path, mode, as_user):
    command = readme_commands()[mode]
    rc, err, calls = run_readme_command(tmp_path, command, uid=1000 if as_user else 0, sudo=as_user)
    assert rc == 0, err
    apt = [c for c in calls if c.startswith("apt-get ")]
    assert apt[0] == "apt-get update -qq" and apt[1].startswith("apt-get install -y ") and len(apt) == 2
    through_sudo = [c for c in calls if c.startswith("sudo ")]
    # a user goes through sudo for apt and nothing else; root has no sudo to call
    assert through_sudo == ([f"sudo env DEBIAN_FRONTEND=noninteractive {c}" for c in apt] if as_user else [])
    packages = _apt_packages(calls)
    assert {"python3-venv", "g++"} <= set(packages)
    if mode == "test":
        assert {"xvfb", "mosquitto", "libsystemd-dev", "pkg-config", "python3-dev"} <= set(packages)
        assert {"chromium", "chromium-driver"} <= set(packages)  # tests/test_web.py's browser
    assert calls.index("python3 -m venv .venv") > calls.index(apt[1])
    assert "python3-picamera2" not in packages  # Debian and Ubuntu have none
    extras = ".[display]" if mode == "daemon" else ".[dev,systemd]"
    assert f"pip install -q -e {extras}" in calls
    if mode == "daemon":
        assert "pip install -q --no-deps -r deploy/requirements-runtime.txt" in calls
        assert "edge-fer-build-runtime " in calls
        # no FER2013 beside this copy: no FER2013 demo, the shipped one instead; and the check
        # that the daemon runs, before `ready`
        assert not any("make_demo_video" in c for c in calls)
        assert any(c.startswith("edge-fer --display none --max-frames 30 ") for c in calls)
    # ... and the README line's own last step ran, after the setup
    last = shlex.split(command.split("&&")[-1])
    assert calls[-1].strip() == " ".join([Path(last[0]).name, *last[1:]])


@pytest.mark.fast
def test_on_raspberry_pi_os_the_daemon_venv_uses_apt_picamera2(tmp_path):
    rc, err, calls = run_readme_command(tmp_path, readme_commands()["daemon"], uid=1000, sudo=True, PI_OS="1")
    assert rc == 0, err
    assert "python3-picamera2" in _apt_packages(calls)
    assert "python3 -m venv --system-site-packages .venv" in calls
    assert "pip install -q -c deploy/constraints-pi.txt -e .[display]" in calls  # apt's numpy kept
    assert (ROOT / "deploy" / "constraints-pi.txt").is_file()


@pytest.mark.fast
def test_a_user_without_sudo_gets_one_line_naming_the_fix(tmp_path):
    rc, err, calls = run_readme_command(tmp_path, readme_commands()["test"], uid=1000, sudo=False)
    assert rc == 2 and not calls
    assert err.strip().splitlines() == [
        "setup.sh: error: installing apt packages needs root: run this as root, or install sudo "
        "and add yourself to it"
    ]


@pytest.mark.fast
def test_bad_mode_and_old_python_are_one_line_errors(tmp_path):
    rc, err, calls = run_readme_command(tmp_path / "a", "scripts/setup.sh tests", uid=0, sudo=False)
    assert rc == 2 and "give a mode: 'scripts/setup.sh daemon'" in err and not calls
    assert len(err.strip().splitlines()) == 1
    rc, err, calls = run_readme_command(
        tmp_path / "b", readme_commands()["daemon"], uid=0, sudo=False, PY_TOO_OLD="1"
    )
    assert rc == 2 and "needs Python 3.11+" in err and "python3 -m venv .venv" not in calls
    assert len(err.strip().splitlines()) == 1


def test_apt_packages_are_known_to_apt_here(tmp_path):
    """Each package the script installs is one this machine's apt knows (names drift)."""
    if not shutil.which("apt-cache") or not any(Path("/var/lib/apt/lists").glob("*Packages*")):
        pytest.skip("no apt package lists here (run apt-get update)")
    for mode in ("daemon", "test"):
        _, _, calls = run_readme_command(tmp_path / mode, f"scripts/setup.sh {mode}", uid=0, sudo=False)
        for package in _apt_packages(calls):
            proc = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True)
            assert proc.returncode == 0 and proc.stdout.strip(), f"apt does not know {package}"


@pytest.mark.fast
def test_ci_runs_the_readme_test_command():
    """.ci/run's commands other than ruff's are the README's test command, in order."""
    text = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    steps = [line for line in lines if not line.startswith((".venv/bin/ruff ", "set -", "cd "))]
    assert " && ".join(steps) == readme_commands()["test"]
    assert "apt-get" not in text  # one package list: scripts/setup.sh
    assert os.access(ROOT / "scripts" / "setup.sh", os.X_OK)


def test_with_fer2013_there_the_daemon_setup_builds_its_demo_too(tmp_path):
    data = tmp_path / "fer2013"
    data.mkdir()
    rc, out, err, calls = run_setup(
        tmp_path / "run", readme_commands()["daemon"], uid=0, sudo=False, EDGE_FER_DATA=str(data)
    )
    assert rc == 0, err
    assert f"python tools/make_demo_video.py --data {data}" in calls
    # (the stub made no video, so the shipped demo is what plays, and setup says so)
    assert "edge-fer plays the demo that ships with it (edge_fer/samples/)" in out


@pytest.mark.parametrize("mode", ["daemon", "test"])
def test_every_step_says_what_it_does_and_how_long_it_took(tmp_path, mode):
    rc, out, err, _ = run_setup(tmp_path, f"scripts/setup.sh {mode}", uid=0, sudo=False)
    assert rc == 0, err
    lines = out.strip().splitlines()
    steps = [line for line in lines if line.startswith("setup.sh: [")]
    total = len(steps)
    assert total >= 7
    for n, line in enumerate(steps, 1):
        assert re.fullmatch(rf"setup\.sh: \[{n}/{total}\] .+ \.\.\.\.* \d+ s", line), line
    assert lines[-1].startswith("setup.sh: ready; ")
    if mode == "daemon":
        assert "plays the demo that ships with it (edge_fer/samples/" in out


@pytest.mark.parametrize(
    ("mode", "prog", "what", "fix"),
    [
        ("daemon", "pip", "pip install the runtime", "check that pip reaches PyPI"),
        ("daemon", "edge-fer-build-runtime", "build the native runner", "install g++"),
        ("daemon", "edge-fer", "check: edge-fer classifies 30 frames", "the daemon does not start"),
        ("test", "pip", "pip install the dev extras", "check that pip reaches PyPI"),
        ("test", "apt-get", "apt-get update", "check the network and apt's sources"),
    ],
)
def test_a_step_that_fails_is_one_line_with_the_fix_and_no_ready(tmp_path, mode, prog, what, fix):
    rc, out, err, _ = run_setup(tmp_path, f"scripts/setup.sh {mode}", uid=0, sudo=False, FAIL_PROG=prog)
    assert rc == 1 and "ready" not in out
    assert re.search(r"\.\.\.\.* failed after \d+ s$", out.strip())
    assert f"{prog}: simulated failure" in err  # its own output, shown because it failed
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"setup.sh: error: {what}") and fix in last, last


def test_a_fer2013_demo_that_cannot_be_built_is_a_warning_and_the_shipped_demo_plays(tmp_path):
    data = tmp_path / "fer2013"
    data.mkdir()
    rc, out, err, calls = run_setup(
        tmp_path / "run",
        "scripts/setup.sh daemon",
        uid=0,
        sudo=False,
        EDGE_FER_DATA=str(data),
        FAIL_PROG="python",
    )
    assert rc == 0, err
    assert (
        err.strip().splitlines()[-1].startswith("setup.sh: warning: FER2013 demo video from")
        and "edge-fer plays the shipped demo instead" in err.strip().splitlines()[-1]
    )
    lines = out.strip().splitlines()
    assert "plays the demo that ships with it" in lines[-2] and lines[-1].startswith("setup.sh: ready; ")
