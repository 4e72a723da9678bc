"""Two (or more) cameras on one Pi: the edge-fer@.service template, per-instance config,
stats, MQTT device and Prometheus `camera` label, two live daemons where one camera fails and
the other carries on, and install.sh's instance and copy steps."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from edge_fer.config import ConfigError, apply_overrides, load_config
from edge_fer.outputs.mqtt import node_name
from testkit.mqtt import Broker, Subscriber
from testkit.programs import start_daemon
from testkit.streams import MjpegServer, free_port, have_mosquitto, jpeg_frames, write_frames

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "systemd" / "edge-fer@.service"


def daemon(args: list[str]) -> subprocess.Popen:
    return start_daemon(args, stdout=subprocess.DEVNULL)


def frames_of(path: Path) -> int:
    try:
        return json.loads(path.read_text())["frames"]
    except (OSError, ValueError, KeyError):
        return 0


def scrape(port: int) -> str:
    return urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_an_instance_gets_its_own_stats_file_and_a_bad_name_is_refused(tmp_path):
    config = apply_overrides(load_config(None), {"instance": "cam1"})
    assert config.stats.path == Path("/run/edge-fer-cam1/stats.json")
    explicit = tmp_path / "c.yaml"
    explicit.write_text(f"instance: cam0\nstats:\n  path: {tmp_path / 's.json'}\n")
    assert load_config(explicit).stats.path == tmp_path / "s.json"
    for bad in ("Cam0", "cam 0", "-cam", "a" * 33, "cam/0", "../etc"):
        with pytest.raises(ConfigError, match="instance"):
            apply_overrides(load_config(None), {"instance": bad})
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.daemon", "--instance", "../x", "--max-frames", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "config key 'instance'" in proc.stderr and "Traceback" not in proc.stderr


def test_the_template_unit_runs_one_configured_daemon_per_instance(tmp_path):
    text = TEMPLATE.read_text()
    assert "ExecStart=/opt/edge-fer/venv/bin/edge-fer --config /etc/edge-fer/%i.yaml --instance %i" in text
    assert "RuntimeDirectory=edge-fer-%i" in text and "SyslogIdentifier=edge-fer-%i" in text
    # The same hardening as the single service, line for line, apart from the instance lines.
    single = (ROOT / "systemd" / "edge-fer.service").read_text()
    same = [
        line
        for line in single.splitlines()
        if line and not line.startswith(("#", "Description=", "ExecStart="))
    ]
    for line in same:
        assert line.replace("=edge-fer\n", "") in text or "%i" in text, line
    hardening = [
        line for line in same if re.match(r"(Protect|Restrict|Private|System|Device|Memory|IPAddr)", line)
    ]
    assert hardening and all(line in text for line in hardening)
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not installed (apt install systemd)")
    unit = tmp_path / "edge-fer@cam0.service"
    unit.write_text(text.replace("/opt/edge-fer/venv/bin/", f"{Path(sys.executable).parent}/"))
    proc = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    proc = subprocess.run(
        [exe, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True
    )
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)[1])
    assert score <= 2.0, score


def test_two_cameras_one_fails_the_other_carries_on(tmp_path, shipped_model, demo_video):
    if have_mosquitto() is None:
        pytest.fail("mosquitto is not installed (apt install mosquitto)")
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    mjpeg = MjpegServer(jpeg_frames(write_frames(demo_video, tmp_path / "frames", count=30)), fps=30)
    ports = {"cam0": free_port(), "cam1": free_port()}
    stats = {name: tmp_path / f"{name}.json" for name in ports}
    sources = {"cam0": mjpeg.url, "cam1": f"file:{demo_video}"}
    procs = {
        name: daemon(
            [
                "--instance",
                name,
                "--source",
                sources[name],
                "--display",
                "none",
                "--console",
                "off",
                "--model",
                str(shipped_model),
                "--stats-path",
                str(stats[name]),
                "--metrics-port",
                str(port),
                "--mqtt",
                f"mqtt://127.0.0.1:{broker.port}",
            ]
        )  # fmt: skip
        for name, port in ports.items()
    }
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(frames_of(p) > 20 for p in stats.values()):
            time.sleep(0.2)
        assert all(frames_of(p) > 20 for p in stats.values()), {n: p.poll() for n, p in procs.items()}
        mjpeg.close()  # cam0's camera goes away
        time.sleep(6)  # its read timeout (5 s) has passed: it is reconnecting
        before = {n: frames_of(p) for n, p in stats.items()}
        time.sleep(3)
        after = {n: frames_of(p) for n, p in stats.items()}
        assert after["cam1"] - before["cam1"] > 30  # cam1 never noticed
        assert after["cam0"] == before["cam0"]  # cam0 has no camera ...
        assert procs["cam0"].poll() is None  # ... and keeps trying rather than exiting
        for name, port in ports.items():
            text = scrape(port)
            assert re.search(rf'edge_fer_frames_total{{camera="{name}"}} \d', text), text[:2000]
            assert f'camera="{name}"' in re.search(r"edge_fer_model_info\{[^}]*\}", text)[0]
        host = node_name()
        for name in ports:
            assert sub.wait_for(f"edge-fer/{host}/{name}/state", timeout=10)
        devices = {
            json.loads(p)["device"]["identifiers"][0]
            for _, t, p, _ in sub.topics("/config")
            if t.endswith("/emotion/config")
        }
        assert devices == {f"edge_fer_{host}_cam0", f"edge_fer_{host}_cam1"}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        errs = {n: p.communicate(timeout=15)[1] for n, p in procs.items()}
        sub.close()
        broker.stop()
    assert all(p.returncode == 0 for p in procs.values()), errs
    assert "dropped out" in errs["cam0"] and "dropped out" not in errs["cam1"]


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "install.sh"), *args], capture_output=True, text=True, timeout=300
    )


def test_install_copies_only_tracked_files_and_sets_up_instances(tmp_path):
    root = tmp_path / "root"
    secret = tmp_path / "mqtt.pass"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    (root / "etc" / "edge-fer").mkdir(parents=True)
    (root / "etc" / "edge-fer" / "cam0.yaml").write_text(
        f"mqtt:\n  url: mqtt://127.0.0.1:1883\n  username: ha\n  password_file: {secret}\n"
    )
    proc = install("--prefix", str(root), "--no-venv", "--instance", "cam0", "--instance", "cam1")
    assert proc.returncode == 0, proc.stderr
    app = root / "opt" / "edge-fer"
    tracked = subprocess.run(
        ["git", "-c", f"safe.directory={ROOT}", "-C", str(ROOT), "ls-files"], capture_output=True, text=True
    ).stdout.split()
    copied = sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file())
    assert copied and set(copied) <= set(tracked), set(copied) - set(tracked)
    assert not (app / ".venv").exists() and not (app / ".venv-ha").exists() and not (app / ".git").exists()
    cam1 = root / "etc" / "edge-fer" / "cam1.yaml"
    assert load_config(cam1).camera.index == 1  # camN watches the CAM/DISP N port
    assert load_config(cam1).display.mode == "none"  # one HDMI screen: the first instance's
    assert (root / "etc" / "edge-fer" / "cam0.yaml").read_text().startswith("mqtt:")  # kept
    assert f"chmod 600 {secret}" in proc.stdout  # a readable password file is flagged
    assert (root / "etc" / "systemd" / "system" / "edge-fer@.service").read_text() == TEMPLATE.read_text()
    dry = install("--dry-run", "--instance", "cam0", "--instance", "cam1")
    assert "systemctl enable --now edge-fer@cam0.service edge-fer@cam1.service" in dry.stdout
    assert "systemctl disable --now edge-fer.service" in dry.stdout
    assert "--upgrade pip" not in dry.stdout and "--upgrade pip" not in install("--dry-run").stdout
    bad = install("--dry-run", "--instance", "Cam 1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "instance name 'Cam 1'" in bad.stderr
