"""edge-fer's test kit: what the tests, the benchmarks and the tools share to drive edge-fer
from outside (stream servers, a picamera2 fake, wrong model programs, Home Assistant probes,
the programs run as users run them).

A package of its own (`testkit/pyproject.toml`, installed editable by `scripts/setup.sh test`),
not part of the `edge-fer` distribution: `deploy/install.sh`'s `pip install` puts only
`edge_fer` into a Pi's venv (the checkout's tracked files are copied beside it as they are,
tests included), so nothing on a device imports it.

* `testkit.streams`: RTSP, MJPEG and silent servers on 127.0.0.1, free ports, Mosquitto.
* `testkit.mqtt`: a real Mosquitto on 127.0.0.1 and a subscriber that records what it carries.
* `testkit.programs`: `edge-fer`, `edge-fer-monitor` and the training tool in child processes,
  and the checks of their one-line errors.
* `testkit.hostile`: hostile inputs several tests share (a YAML alias bomb).
* `testkit.xvfb`: a private X server for real windows (`start_xvfb`).
* `testkit.scripts`: a script of the checkout (a benchmark, a deploy helper) imported as a module.
* `testkit.bad_models`: `python -m testkit.bad_models OUTDIR` exports wrong model programs.
* `testkit.ha_live`, `testkit.ha_validate`: run with Home Assistant's own Python (`.venv-ha`).
* `FAKES`: a folder to put first on a child process's PYTHONPATH so that its `import picamera2`
  gets the fake in `fakes/picamera2` (a folder, not a subpackage: the child must see the fake
  under picamera2's own name).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FAKES = HERE / "fakes"
HA_LIVE = HERE / "ha_live.py"
HA_VALIDATE = HERE / "ha_validate.py"
