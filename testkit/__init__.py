"""edge-fer's test kit: what the tests, the benchmarks and the tools share to drive edge-fer
from outside (stream servers, a picamera2 fake, wrong model programs, Home Assistant probes,
the programs run as users run them).

A package of its own (`testkit/pyproject.toml`, installed editable by `scripts/setup.sh test`),
not part of the `edge-fer` distribution: `deploy/install.sh` installs only `edge_fer` onto the
Pi, so none of this reaches a device.

* `testkit.streams`: RTSP, MJPEG and silent servers on 127.0.0.1, free ports, Mosquitto.
* `testkit.programs`: `edge-fer`, `edge-fer-monitor` and the training tool in child processes.
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
