"""The Grafana fleet dashboard: Pi and camera variables, and every panel kept per Pi and camera
(no sum or fixed legend that merges two Pis or two cameras)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAEMON_METRICS = (
    "edge_fer_fps",
    "edge_fer_faces",
    "edge_fer_stage_latency_seconds",
    "edge_fer_emotion_total",
    "edge_fer_dropped_frames_total",
    "edge_fer_reconnects_total",
    "edge_fer_start_time_seconds",
)


def dashboard() -> dict:
    return json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())


def test_instance_and_camera_variables_chain():
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(variables) == {"instance", "camera"}
    assert all(v["multi"] and v["includeAll"] for v in variables.values())
    assert variables["instance"]["definition"] == "label_values(edge_fer_fps, instance)"
    assert "$instance" in variables["camera"]["definition"] and variables["camera"]["definition"].endswith(
        "camera)"
    )


def test_every_panel_is_per_instance_and_camera():
    targets = [(p["title"], t) for p in dashboard()["panels"] for t in p["targets"]]
    assert len(targets) >= 10
    for title, t in targets:
        expr, legend = t["expr"], t["legendFormat"]
        daemon = any(m in expr for m in DAEMON_METRICS)
        for selector in re.findall(r"edge_fer_[a-z_]+\{([^}]*)\}", expr):
            assert 'instance=~"($instance)(:[0-9]+)?"' in selector, (title, expr)
            if daemon:
                assert 'camera=~"$camera"' in selector, (title, expr)
        assert not re.search(r"edge_fer_[a-z_]+(\[|\)|$| )", expr), f"{title}: unfiltered series in {expr}"
        for by in re.findall(r"by \(([^)]*)\)", expr):
            keys = {k.strip() for k in by.split(",")}
            assert "instance" in keys and (not daemon or "camera" in keys), (title, expr)
        assert "{{instance}}" in legend and (not daemon or "{{camera}}" in legend), (title, legend)
