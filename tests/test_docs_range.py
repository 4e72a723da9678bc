"""The range tables in the docs are the ones benchmarks/bench_range.py made from its results
file, so they cannot drift from the measurement (rerun the benchmark to change them)."""

from __future__ import annotations

import json

import pytest

from edge_fer.core.paths import PROJECT_ROOT as ROOT
from testkit.scripts import load_script

pytestmark = pytest.mark.fast


def _bench_range():
    return load_script(ROOT / "benchmarks" / "bench_range.py")


@pytest.mark.parametrize("doc", ["docs/range.md", "README.md", "edge_fer/models/README.md"])
def test_range_tables_in_the_docs_come_from_the_results_file(doc):
    bench = _bench_range()
    results = json.loads((ROOT / "benchmarks" / "results" / "range.json").read_text())
    text = (ROOT / doc).read_text()
    tables = bench.markdown(results)
    assert bench.fill_docs(text, tables) == text, f"rerun python benchmarks/bench_range.py to refresh {doc}"
    if doc != "README.md":
        assert any(f"<!-- range:{name} -->" in text for name in tables), f"{doc} shows no range table"


def test_the_default_readable_size_is_the_one_the_read_curve_gives():
    from edge_fer.config import Config

    results = json.loads((ROOT / "benchmarks" / "results" / "range.json").read_text())
    assert Config().smoothing.min_readable_px == _bench_range().min_readable(results["read_by_size"])


def test_the_eight_face_figures_in_the_range_page_are_the_results_files():
    rows = json.loads((ROOT / "benchmarks" / "results" / "range_8faces.json").read_text())["rooms"]["1080p"][
        "48"
    ]
    page = " ".join((ROOT / "docs" / "range.md").read_text().split())
    said = (
        f"runs at {rows['default']['fps']:.1f} fps and finds {rows['default']['recall']:.2f} of the faces"
        f" (full resolution on every frame: {rows['full']['recall']:.2f} at {rows['full']['fps']:.1f} fps)"
    )
    assert said in page, f"docs/range.md should say: {said}"
