"""The web page's cost table in docs/web.md is benchmarks/results/web.json's."""

from __future__ import annotations

import json

from edge_fer.core.paths import PROJECT_ROOT as ROOT


def test_the_web_cost_table_is_the_results_file():
    summary = json.loads((ROOT / "benchmarks" / "results" / "web.json").read_text())["summary"]
    page = (ROOT / "docs" / "web.md").read_text()
    for mode, label, viewers in (
        ("off", "off", "-"),
        ("web0", "on", "0"),
        ("web1", "on", "1"),
        ("web5", "on", "5"),
    ):
        r = summary[mode]
        row = f"| {label} | {viewers} | {r['fps']:.1f} | {r['cpu_ms_per_frame']:.1f}"
        assert row in page, f"docs/web.md should have the row {row!r} (rerun benchmarks/bench_web.py)"
        assert mode == "off" or r["fps_cost_percent"] <= {"web0": 5, "web1": 10, "web5": 25}[mode]
