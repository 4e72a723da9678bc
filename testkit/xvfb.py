"""A private X server (Xvfb) for the tests and tools that open a real window."""

from __future__ import annotations

import os
import shutil
import subprocess


class XvfbMissing(RuntimeError):
    """Xvfb is not installed (apt install xvfb)."""


def start_xvfb(size: tuple[int, int] = (800, 600)) -> tuple[subprocess.Popen, str]:
    """Xvfb with one screen of `size`, on a display number it picks itself (-displayfd), so
    parallel runs never clash; returns the server and its DISPLAY. The caller stops it."""
    exe = shutil.which("Xvfb")
    if exe is None:
        raise XvfbMissing("Xvfb not installed (apt install xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number.isdigit():
        proc.kill()
        proc.wait(5)
        raise RuntimeError("Xvfb did not start")
    return proc, f":{number}"
