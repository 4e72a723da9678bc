"""What anyone who clones the repository gets: a fresh clone with no ../shared (no FER2013)
beside it, the README's Quick start line run as written, headless (no terminal, no screen),
as root and as a user with sudo; apt-get is stubbed (as in tests/test_setup_commands.py),
everything else is real: python3, the venv, pip, the native runner's build, the daemon."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# apt-get and apt-cache: record the call; no python3-picamera2 (Debian, not Raspberry Pi OS)
APT = (
    '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'
    + '[ "$1 $2" = "show python3-picamera2" ] && exit 100\nexit 0\n'
)
SUDO = '#!/bin/sh\necho "sudo $*" >> "$CALLS"\nexec "$@"\n'
ID = '#!/bin/sh\nif [ "$1" = -u ]; then echo 1000; else exec /usr/bin/id "$@"; fi\n'

pytestmark = pytest.mark.slow


def quick_start() -> str:
    """The README's Quick start line: set up the daemon, then start it."""
    lines = [
        line
        for block in re.findall(r"```bash\n(.*?)```", README, re.S)
        for line in block.splitlines()
        if line.startswith("scripts/setup.sh daemon && ")
    ]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


def readme_log_lines() -> list[str]:
    """Regexes of the log lines the README's "What you will see" shows (`...`: any text,
    numbers: any number; the timestamps it leaves out)."""
    block = re.search(r"### What you will see\n.*?```text\n(.*?)```", README, re.S)
    assert block, "no log example under 'What you will see' in the README"
    patterns = []
    for line in block[1].strip().splitlines():
        pattern = re.escape(line).replace(re.escape("..."), ".*")
        patterns.append(re.sub(r"\d+", r"\\d+", pattern))
    return patterns


class Output:
    """A process's output lines, read as they come, with the time each arrived."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, pattern: str, timeout: float) -> tuple[float, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, line in list(self.lines):
                if re.search(pattern, line):
                    return when, line
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + self.text())

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


@pytest.fixture(scope="module")
def runner_cache(tmp_path_factory) -> Path:
    """The native runner built by the first clone, handed to the next one like pip's cache."""
    return tmp_path_factory.mktemp("runner-cache")


def _environment(tmp: Path, as_user: bool) -> dict[str, str]:
    stubs = tmp / "stubs"
    stubs.mkdir()
    programs = {"apt-get": APT, "apt-cache": APT, **({"sudo": SUDO, "id": ID} if as_user else {})}
    for name, text in programs.items():
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    env.pop("EDGE_FER_DATA", None)
    env.pop("NOTIFY_SOCKET", None)
    env["PATH"] = f"{stubs}:{env['PATH']}"
    env["CALLS"] = str(tmp / "calls.txt")
    return env


@pytest.mark.parametrize("as_user", [False, True], ids=["root", "sudo-user"])
def test_a_fresh_clone_runs_the_quick_start_as_written(tmp_path, as_user, runner_cache):
    clone = tmp_path / "edge-fer"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    assert not (tmp_path / "shared").exists()
    built = runner_cache / "_build"
    if built.is_dir():
        subprocess.run(["cp", "-a", str(built), str(clone / "edge_fer" / "native" / "_build")], check=True)
    env = _environment(tmp_path, as_user)
    proc = subprocess.Popen(
        ["/bin/bash", "-c", quick_start()],
        cwd=clone,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # no terminal: as under nohup or systemd
    )
    out = Output(proc.stdout)
    try:
        ready_at, _ = out.wait_for(r"^setup\.sh: ready; start the daemon with: \.venv/bin/edge-fer$", 300)
        # the daemon: the demo that ships with it, classified, all within 10 s of its start
        out.wait_for(r"playing the shipped demo video .*edge_fer/samples/demo_faces_640x480\.mp4", 10)
        first_at, _ = out.wait_for(r"ready: first frame classified", 10)
        assert first_at - ready_at < 10, out.text()
        # headless, a summary with faces and labels within a few seconds of the first frame
        summary_at, _ = out.wait_for(
            r"edge_fer\.runtime\.summary: first \d+ s: .* faces? seen .*\| (neutral|happy) \d+%", 10
        )
        assert summary_at - ready_at < 10, out.text()
        time.sleep(max(0.0, ready_at + 6 - time.monotonic()))
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says
        rc = proc.wait(timeout=30)
        out.thread.join(timeout=5)
    text = out.text()
    assert rc == 0, text
    stopped = re.search(r"stopped \(signal\) after [\d.]+ s: (\d+) frames", text)
    assert stopped and int(stopped[1]) >= 60, text  # ~30 fps for the seconds it ran
    assert "error" not in text.lower(), text
    for pattern in readme_log_lines():  # what the README says you will see
        assert re.search(pattern, text), f"the README shows a line like {pattern!r}; the run printed:\n{text}"
    steps = re.findall(r"^setup\.sh: \[(\d+)/(\d+)\] .* \.\.\.\.* (\d+) s$", text, re.M)
    assert steps and all(total == steps[0][1] for _, total, _ in steps) and len(steps) == int(steps[0][1])
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    through_sudo = [c for c in calls if c.startswith("sudo ")]
    assert len(through_sudo) == (2 if as_user else 0), calls  # apt-get update and install only
    if not built.is_dir():
        subprocess.run(["cp", "-a", str(clone / "edge_fer" / "native" / "_build"), str(built)], check=True)

    # What it shows: the README's headless command from the same clone, its JSON lines read.
    headless = subprocess.run(
        [".venv/bin/edge-fer", "--display", "none", "--events-jsonl", "-", "--max-frames", "150"]
        + ["--stats-path", str(tmp_path / "stats.json")],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--display none --events-jsonl -" in README
    assert headless.returncode == 0, headless.stderr
    frames = [json.loads(line) for line in headless.stdout.splitlines()]
    assert len(frames) == 150 and all(len(f["faces"]) == 2 for f in frames[5:])
    labels = Counter(face["smoothed"] for f in frames for face in f["faces"])
    assert len({face["id"] for f in frames for face in f["faces"]}) >= 2
    assert labels["happy"] >= 20 and labels["neutral"] >= 20, labels
