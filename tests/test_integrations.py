"""The daemon's results where people collect them: a real Mosquitto broker (Home Assistant
discovery, state, last will, auth, a broker that goes away), the real Prometheus text parser
on a live /metrics, and the console line on a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fer.emotions.labels import EMOTIONS, published_labels
from testkit.mqtt import MOSQUITTO, Broker, Subscriber
from testkit.programs import start_daemon as daemon
from testkit.streams import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (apt install mosquitto)")


@pytest.fixture()
def base(video_args) -> list[str]:
    return video_args


def test_home_assistant_discovery_state_and_clean_offline(tmp_path, base):
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    try:
        proc = daemon([*base, "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--max-frames", "150"])
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert sub.wait_for("/availability", "offline", timeout=5)
        states = [json.loads(p) for _, _, p, _ in sub.topics("/state")]
        assert states and all(s["emotion"] in (*published_labels(), None) for s in states)
        assert any(s["faces"] >= 1 and s["emotion"] in EMOTIONS for s in states)
        faces = [json.loads(p) for _, _, p, _ in sub.topics("/face")]
        assert faces and all(set(f) == {"id", "label", "score", "box"} for f in faces)
        stats = [json.loads(p) for _, _, p, _ in sub.topics("/stats")]
        assert stats and stats[-1]["fps"] > 0 and "classify" in stats[-1]["latency_ms"]
    finally:
        sub.close()
    # A client that connects later (Home Assistant after a restart) gets the retained configs.
    late = Subscriber(broker.port)
    try:
        assert late.wait_for("/dropped_frames/config", timeout=5)
        configs = {t: json.loads(p) for _, t, p, r in late.topics("/config") if r}
        assert len(configs) == 7
        assert all(t.startswith("homeassistant/sensor/edge_fer_") for t in configs)
        emotion = next(c for t, c in configs.items() if t.endswith("/emotion/config"))
        assert emotion["state_topic"].endswith("/state") and "value_json.emotion" in emotion["value_template"]
        assert emotion["availability_topic"].endswith("/availability")
        assert emotion["device"]["name"].startswith("edge-fer") and emotion["unique_id"]
        assert [p for _, _, p, r in late.topics("/availability") if r] == ["offline"]
    finally:
        late.close()
        broker.stop()


def test_last_will_marks_a_killed_daemon_offline(tmp_path, base):
    broker = Broker(tmp_path)
    sub = Subscriber(broker.port)
    proc = daemon([*base, "--mqtt", f"mqtt://127.0.0.1:{broker.port}"])
    try:
        assert sub.wait_for("/availability", "online", timeout=60), proc.stderr
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        assert sub.wait_for("/availability", "offline", timeout=10, after=killed_at)
    finally:
        proc.kill()
        sub.close()
        broker.stop()


def test_username_and_password_file(tmp_path, base):
    broker = Broker(tmp_path, users={"ha": "s3cret"})
    sub = Subscriber(broker.port, username="ha", password="s3cret")
    secret = tmp_path / "mqtt.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)  # a group/world-readable password file is refused
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mqtt:\n  url: mqtt://127.0.0.1:{broker.port}\n  username: ha\n"
        f"  password_file: {secret}\n  topic_prefix: home/pi-door\n"
    )
    try:
        proc = daemon([*base, "--config", str(config), "--max-frames", "60"])
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert sub.wait_for("home/pi-door/availability", "offline", timeout=5)
        assert sub.topics("home/pi-door/state")
        # A wrong password is refused by the broker: logged once, frames still flow.
        secret.write_text("wrong\n")
        proc = daemon([*base, "--config", str(config), "--max-frames", "60"])
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err.count("refused the connection") == 1
        # A missing password file is a start-up error naming the key.
        secret.unlink()
        proc = daemon([*base, "--config", str(config), "--max-frames", "5"])
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "mqtt.password_file" in err and "Traceback" not in err
    finally:
        sub.close()
        broker.stop()


def test_broker_restart_mid_run_never_stalls_frames(tmp_path, base):
    broker = Broker(tmp_path)
    stats_file = tmp_path / "stats.json"
    proc = daemon([*base, "--mqtt", f"mqtt://127.0.0.1:{broker.port}"])
    sub = Subscriber(broker.port)
    try:
        assert sub.wait_for("/state", timeout=60)
        sub.close()
        broker.stop()
        frames_before = json.loads(stats_file.read_text())["frames"]
        time.sleep(3)
        frames_during = json.loads(stats_file.read_text())["frames"]
        assert frames_during - frames_before > 30  # the frame loop did not wait on the broker
        broker.start()
        restarted = time.monotonic()
        sub = Subscriber(broker.port)
        assert sub.wait_for("/availability", "online", timeout=40, after=restarted)
        assert sub.wait_for("/stats", timeout=10, after=restarted)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert err.count("mqtt: lost broker") == 1  # one line per outage, not per retry
    finally:
        proc.kill()
        sub.close()
        broker.stop()


def test_prometheus_endpoint_parses_with_the_client_parser(tmp_path, base):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    proc = daemon([*base, "--metrics-port", str(port)])
    try:
        deadline, text, families = time.monotonic() + 90, "", {}
        while time.monotonic() < deadline:
            try:
                text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.3)
                continue
            families = {f.name: f for f in text_string_to_metric_families(text)}
            frames = families.get("edge_fer_frames")
            if frames is not None and frames.samples[0].value > 0 and families.get("edge_fer_emotion"):
                break
            time.sleep(0.3)
        assert families, f"no metrics within 90 s: {proc.poll()=}"
        assert families["edge_fer_frames"].type == "counter"
        assert families["edge_fer_frames"].samples[0].value > 0
        assert families["edge_fer_dropped_frames"].type == "counter"
        assert families["edge_fer_reconnects"].type == "counter"
        assert families["edge_fer_faces"].type == "gauge"
        emotions = {
            s.labels["label"]: s.value
            for s in families["edge_fer_emotion"].samples
            if s.name == "edge_fer_emotion_total"
        }
        assert set(EMOTIONS) <= set(emotions) <= set(published_labels())  # + uncertain once seen
        latency = families["edge_fer_stage_latency_seconds"]
        assert latency.type == "histogram"
        assert {s.labels["stage"] for s in latency.samples} == {"capture", "detect", "classify", "total"}
        counts = [
            s.value for s in latency.samples if s.name.endswith("_bucket") and s.labels["stage"] == "total"
        ]
        assert counts == sorted(counts) and counts[-1] > 0  # cumulative buckets
        info = next(f for name, f in families.items() if name.startswith("edge_fer_model")).samples[0]
        assert info.name == "edge_fer_model_info" and info.value == 1
        assert info.labels["runtime"] in ("native", "pybind") and info.labels["camera"] == "default"
        assert "run_id" not in info.labels and "/" not in info.labels["file"]  # stable across restarts
        # Bound to loopback by default.
        with pytest.raises(OSError):
            addr = socket.gethostbyname(socket.gethostname())
            if addr.startswith("127."):
                raise OSError("no other address to try")
            socket.create_connection((addr, port), timeout=1).close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_metrics_port_in_use_is_a_one_line_error(tmp_path, base):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = daemon([*base, "--metrics-port", str(port), "--max-frames", "5"])
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_monitor_metrics_endpoint(tmp_path):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_fer.apps.monitor",
            "--seconds",
            "4",
            "--interval",
            "0.2",
            "--metrics-port",
            str(port),
            "--stats",
            str(tmp_path / "none.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = ""
        for _ in range(40):
            time.sleep(0.2)
            try:
                text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
            if "edge_fer_cpu_percent" in text:
                break
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"edge_fer_cpu_percent", "edge_fer_memory_available_bytes", "edge_fer_daemon_up"} <= names
    finally:
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_console_line_on_a_terminal(tmp_path, base):
    """Headless on a TTY: one status line a second, like '60.1 fps | 1 face | #1 happy 0.91'."""
    primary, secondary = pty.openpty()
    proc = daemon([*base, "--max-frames", "200"], stdout=secondary)
    os.close(secondary)
    out = b""
    try:
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        proc.wait(timeout=60)
        os.close(primary)
    lines = [line for line in out.decode().splitlines() if " fps | " in line]
    assert lines, out[-500:]
    assert all("classify" in line and " ms" in line for line in lines)
    assert any("#" in line and any(e in line for e in EMOTIONS) for line in lines)
    # Not on a pipe (systemd's journal, scripts): stdout stays clean.
    piped = daemon([*base, "--max-frames", "60"])
    out2, _ = piped.communicate(timeout=60)
    assert " fps | " not in out2


def test_grafana_dashboard_uses_only_exported_metrics():
    import re

    from edge_fer.monitor.prometheus import GAUGES

    exported = {
        "edge_fer_fps",
        "edge_fer_faces",
        "edge_fer_stage_latency_seconds_bucket",
        "edge_fer_emotion_total",
        "edge_fer_dropped_frames_total",
        "edge_fer_reconnects_total",
        "edge_fer_start_time_seconds",
        "edge_fer_throttle_flag",
        "edge_fer_daemon_up",
        *(g[0] for g in GAUGES),
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    used = {
        m
        for p in dashboard["panels"]
        for t in p["targets"]
        for m in re.findall(r"edge_fer_[a-z_]+", t["expr"])
    }
    assert used and used <= exported, used - exported
