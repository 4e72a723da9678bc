"""The README and docs/ stay true: every link resolves, every figure quoted from a results file
or from the model is that file's figure, the example outputs are what the commands print, the
synopses list exactly the flags `--help` has, and the descriptions of the code match it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_fer.core.paths import DEFAULT_DATA
from edge_fer.emotions.smooth import AppearanceCheck

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, ROOT / "ARCHITECTURE.md", *DOCS, ROOT / "edge_fer" / "models" / "README.md"]
RESULTS = ROOT / "benchmarks" / "results"
SHIPPED = "edge_fer/models/edge_fer_student.pte"


def text(path: Path) -> str:
    return path.read_text()


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", text(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


@pytest.mark.fast
def test_every_link_in_the_docs_resolves():
    for page in PAGES:
        body = re.sub(r"```.*?```", "", text(page), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if re.match(r"[a-z]+://", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                where = page.relative_to(ROOT)
                assert anchor in anchors(path), f"{where}: no heading for #{anchor} in {file}"


@pytest.mark.fast
def test_every_docs_page_is_linked_from_the_readme():
    readme = text(README)
    for page in DOCS:
        assert f"(docs/{page.name})" in readme, f"the README's 'Where to go next' lacks docs/{page.name}"


@pytest.mark.fast
def test_figures_of_the_shipped_model_are_its_results():
    robust = json.loads((RESULTS / "robustness_soup.json").read_text())["models"]
    ours, peer = robust[SHIPPED], robust["fer (int8 tflite)"]
    head_to_head = json.loads((RESULTS / "models.json").read_text())["head_to_head_vs_fer_1t"]
    meta = json.loads((ROOT / "edge_fer" / "models" / "edge_fer_student.json").read_text())["accuracy"]
    calibration = json.loads((ROOT / "edge_fer" / "models" / "edge_fer_student_calibration.json").read_text())
    size_kb = (ROOT / SHIPPED).stat().st_size / 1024
    readme = " ".join(text(README).split())
    assert f"int8 MobileNetV2 of {size_kb:.0f} KB" in readme
    clean, degraded = percent(ours["clean"]), percent(ours["mean_degraded"])
    assert f"on {clean} of FER2013's PublicTest faces and on {degraded}" in readme
    training = " ".join(text(ROOT / "docs" / "training.md").split())
    for quoted in (
        f"two FaceVGG teachers ({percent(meta['teacher_val_accuracy'])})",
        f"{size_kb:.0f} KB",
        f"**{percent(ours['clean'])} on clean PublicTest**",
        f"**{percent(ours['mean_degraded'])} averaged over nine camera",
        f"({percent(peer['clean'])} clean, {percent(peer['mean_degraded'])} degraded)",
        f"at {head_to_head['ratio_median']:.2f}x its per-face time",
        f"ECE {percent(calibration['calibrated_5fold_cv']['ece'])[:-2]}",
    ):
        assert quoted in training, f"docs/training.md should say {quoted!r} (from the results files)"
    ece = f"{100 * calibration['calibrated_5fold_cv']['ece']:.2f}%"
    assert f"by 5-fold cross-validation, is {ece}" in " ".join(text(ROOT / "docs" / "daemon.md").split())


@pytest.mark.skipif(not (DEFAULT_DATA / "test").is_dir(), reason=f"FER2013 not found at {DEFAULT_DATA}")
def test_the_model_cards_evaluate_figures_are_what_evaluate_prints(tmp_path):
    """The model card's first rows name `tools/evaluate.py` on PublicTest: run it."""
    proc = subprocess.run(
        [sys.executable, "tools/evaluate.py", "--data", str(DEFAULT_DATA / "test"), "--json"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    card = text(ROOT / "edge_fer" / "models" / "README.md")
    assert f"| accuracy, clean crops | **{100 * summary['accuracy']:.2f}%** |" in card
    assert f"| macro-F1 | {summary['macro_f1']:.4f} |" in card


def _json_examples(page: Path) -> list[list[dict]]:
    """Each ```json block of a page: its JSON lines (one object, or one per face of a photo)."""
    blocks = re.findall(r"```json\n(.*?)```", text(page), re.S)
    return [[json.loads(line) for line in block.splitlines() if line.strip()] for block in blocks]


@pytest.mark.parametrize("page", [README, ROOT / "docs" / "photos.md"], ids=["README", "photos"])
def test_the_photo_examples_are_what_edge_fer_classify_prints(page):
    examples = [block for block in _json_examples(page) if "image" in block[0]]
    assert examples, f"no edge-fer-classify example in {page.name}"
    for block in examples:
        image = block[0]["image"]
        assert f"edge-fer-classify {image}" in text(README) + text(ROOT / "docs" / "photos.md")
        proc = subprocess.run(
            [sys.executable, "-m", "edge_fer.apps.classify", image],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(lines) == len(block), f"{image}: {len(lines)} faces, the example shows {len(block)}"
        for got, example in zip(lines, block, strict=True):
            _same_answer(got, example)


def _same_answer(got: dict, example: dict) -> None:
    assert {k: got[k] for k in ("image", "face", "box", "label")} == {
        k: example[k] for k in ("image", "face", "box", "label")
    }
    # scores: the same to the rounding of the int8 kernels of another CPU
    assert got["score"] == pytest.approx(example["score"], abs=0.02)
    if "probs" in example:  # an example may leave them out
        assert got["probs"] == pytest.approx(example["probs"], abs=0.02)


def _help(module: str) -> set[str]:
    """The flags `--help` lists, of a module (`edge_fer.apps.daemon`) or a script (`tools/x.py`)."""
    program = [module] if module.endswith(".py") else ["-m", module]
    out = subprocess.run(
        [sys.executable, *program, "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", out))


@pytest.mark.fast
@pytest.mark.parametrize(
    ("page", "program", "module"),
    [
        ("daemon.md", "edge-fer", "edge_fer.apps.daemon"),
        ("photos.md", "edge-fer-classify", "edge_fer.apps.classify"),
    ],
)
def test_the_synopses_list_every_flag(page, program, module):
    synopsis = re.search(rf"```\n{program} (.*?)```", text(ROOT / "docs" / page), re.S)
    assert synopsis, f"no {program} synopsis block in docs/{page}"
    listed = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", synopsis[1]))
    flags = _help(module)
    assert flags - listed == set(), f"docs/{page} synopsis lacks {sorted(flags - listed)}"
    assert listed - flags == set(), f"docs/{page} synopsis names unknown {sorted(listed - flags)}"


def test_every_flag_the_readme_uses_exists():
    flags = (
        _help("edge_fer.apps.daemon") | _help("edge_fer.apps.classify") | _help("tools/overlay_screenshot.py")
    )
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", text(README)))
    assert used - flags == set(), f"the README uses unknown flags {sorted(used - flags)}"


@pytest.mark.fast
def test_the_smoothing_docs_describe_the_appearance_check_the_code_has():
    side, shift = AppearanceCheck.SIDE, AppearanceCheck.SHIFT
    daemon = " ".join(text(ROOT / "docs" / "daemon.md").split())
    assert f"every frame, the face's {side}x{side} look is compared with the previous frame's" in daemon
    assert f"(allowing a {shift} px shift)" in daemon
    layout = " ".join(text(ROOT / "ARCHITECTURE.md").split())
    assert f"its {side}x{side} look from one frame to the next, allowing a {shift} px shift" in layout
    for page in PAGES:
        for other in {8, 12, 24, 32} - {side}:
            assert f"{other}x{other} look" not in text(page), page


@pytest.mark.fast
def test_the_apt_packages_the_readme_names_are_setups():
    setup = text(ROOT / "scripts" / "setup.sh")
    daemon = re.search(r"^APT_DAEMON=\((.*?)\)", setup, re.M)[1].split()
    named = re.search(r"installs two apt packages \((.*?)[;)]", " ".join(text(README).split()))
    assert named and re.findall(r"`([^`]+)`", named[1]) == daemon and len(daemon) == 2


def test_the_fuzz_counts_in_the_tests_page_are_the_fuzz_tests():
    import test_fuzz  # a neighbour: pytest imports the tests by their bare module names

    counts = sorted(
        f._hypothesis_internal_use_settings.max_examples
        for name, f in vars(test_fuzz).items()
        if name.startswith("test_") and hasattr(f, "_hypothesis_internal_use_settings")
    )
    page = " ".join(text(ROOT / "docs" / "tests.md").split())
    said = re.search(r"runs ([\d,]+) generated inputs per run .*?: (.*?)\.", page)
    assert said, "docs/tests.md no longer counts the fuzz inputs"
    assert int(said[1].replace(",", "")) == sum(counts)
    assert sorted(int(n) for n in re.findall(r"\b(\d+) [a-zA-Z]", said[2])) == counts


def _span(values: list[float], digits: int, unit: str) -> str:
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return f"{low} {unit}" if low == high else f"{low}-{high} {unit}"


@pytest.mark.fast
def test_speed_and_memory_figures_are_the_benchmarks_results():
    rows = json.loads((RESULTS / "pipeline_scale.json").read_text())["rows"]

    def at(size: str, key) -> list[float]:
        return [key(r) for r in rows if r["size"] == size]

    capture = lambda r: r["latency_ms"]["capture"]["p50"]  # noqa: E731
    per_face = []
    for size in ("640x480", "1280x720", "1920x1080"):
        by_faces = {r["faces"]: r["latency_ms"]["classify"]["p50"] for r in rows if r["size"] == size}
        per_face.append((by_faces[max(by_faces)] - by_faces[min(by_faces)]) / (max(by_faces) - min(by_faces)))
    rss_vga = at("640x480", lambda r: r["peak_rss_mb"])
    rss_full_hd = at("1920x1080", lambda r: r["peak_rss_mb"])
    cameras = " ".join(text(ROOT / "docs" / "network-cameras.md").split())
    for quoted in (
        f"capture p50 {_span(at('640x480', capture), 1, 'ms')} at 640x480",
        f"{_span(at('1920x1080', capture), 1, 'ms')} at 1080p",
        f"one batch, {_span(per_face, 2, 'ms')} per extra face",
        f"({_span(rss_vga, 0, 'MB')} at 640x480, {_span(rss_full_hd, 0, 'MB')} at 1080p)",
    ):
        assert quoted in cameras, f"docs/network-cameras.md should say {quoted!r} (pipeline_scale.json)"
    runtime = {r["way"]: r for r in json.loads((RESULTS / "runtime.json").read_text())["rows"]}
    daemon = " ".join(text(ROOT / "docs" / "daemon.md").split())
    for quoted in (
        f"daemon peak RSS {_span(rss_vga, 0, 'MB')} headless on a 640x480 video",
        f"import, load and first inference {runtime['native']['total_s']:.2f} s",
        f"{runtime['native']['rss_mb']:.0f} MB resident after it",
        f"({runtime['pybind']['total_s']:.2f} s and {runtime['pybind']['rss_mb']:.0f} MB for the same)",
    ):
        assert quoted in daemon, f"docs/daemon.md should say {quoted!r} (benchmarks/results)"


@pytest.mark.fast
def test_the_failure_figures_are_bench_faults_results():
    faults = json.loads((RESULTS / "faults.json").read_text())["faults"]
    flood = [
        re.search(r"(\d+) requests in ([\d.]+) s, .*\((\d+)% less\)", seen)
        for seen in faults["flood"]["seen"]
    ]
    requests = {int(m[1]) for m in flood}
    less = [int(m[3]) for m in flood]
    page = " ".join(text(ROOT / "docs" / "failures.md").split())
    assert (
        len(requests) == 1
        and f"so {requests.pop():,} requests in 3 s cost {_span(less, 0, '%')}".replace(" %", "%") in page
    )
    scrapes = [seen.endswith("scrape after: True") for seen in faults["half-open"]["seen"]]
    assert (
        f"a scrape went through after 300 half-open clients, {sum(scrapes)} of {len(scrapes)} times" in page
    )


@pytest.mark.fast
def test_the_training_and_install_figures_are_their_records():
    hours = {
        round(json.loads((ROOT / "teachers" / t / "teacher.done.json").read_text())["seconds"] / 3600, 1)
        for t in ("t4", "t5")
    }
    assert len(hours) == 1, hours
    training = " ".join(text(ROOT / "docs" / "training.md").split())
    assert f"`teachers/t5/`, ~{hours.pop()} h of CPU each)" in training
    venv_mb = re.search(r"the venv is \*\*(\d+) MB\*\*", text(ROOT / "deploy" / "README.md"))[1]
    assert f"has its last table: a {venv_mb} MB venv)" in " ".join(text(ROOT / "docs" / "deploy.md").split())


@pytest.mark.fast
def test_the_exposure_table_is_what_systemd_analyze_says(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    rows = re.findall(
        r"^\| `(edge-fer[\w@.-]*\.service)` \| ([\d.]+) (\w+) \|", text(ROOT / "docs" / "deploy.md"), re.M
    )
    assert len(rows) == len(list((ROOT / "systemd").glob("*.service"))), rows
    for unit, score, level in rows:
        shutil.copy(ROOT / "systemd" / unit, tmp_path / unit)
        out = subprocess.run(
            [exe, "security", "--offline=yes", "--no-pager", str(tmp_path / unit)],
            capture_output=True,
            text=True,
        ).stdout
        name = re.escape(unit).replace("@", "@\\w*")  # a template is analysed as an instance
        assert re.search(rf"Overall exposure level for {name}: {score} {level}", out), (unit, out[-300:])


def _yaml_blocks(page: Path) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"```yaml\n(.*?)```", text(page), re.S)]


@pytest.mark.fast
def test_every_config_example_in_the_docs_is_a_valid_config_and_its_defaults_are_the_codes(tmp_path):
    import yaml

    from edge_fer.config import Config, load_config

    defaults = Config()
    seen = 0
    for page in PAGES:
        for block in _yaml_blocks(page):
            if "scrape_configs" in block:
                continue  # Prometheus's, not ours
            (tmp_path / "secret").write_text("x\n")
            (tmp_path / "secret").chmod(0o600)
            path = tmp_path / "config.yaml"
            path.write_text(block.replace("/etc/edge-fer/camera.pass", str(tmp_path / "secret")))
            load_config(path)  # a ConfigError fails the test: the docs show a config that is refused
            seen += 1
            if "the defaults" in block:
                for section, values in yaml.safe_load(block).items():
                    for key, value in values.items():
                        assert getattr(getattr(defaults, section), key) == value, (page.name, section, key)
    assert seen >= 2


@pytest.mark.fast
def test_the_config_errors_quoted_in_the_docs_are_what_the_daemon_says(tmp_path):
    from edge_fer.config import Config, ConfigError, load_config

    daemon = " ".join(text(ROOT / "docs" / "daemon.md").split())
    failures = " ".join(text(ROOT / "docs" / "failures.md").split())
    bad = tmp_path / "config.yaml"
    bad.write_text("smoothing:\n  window: 0\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    assert f"a bad key stops it with e.g. `{error.value}`" in daemon
    bad.write_text("source: auto\nsmoothing:\n  window: 30\nsmoothing:\n  window: 20\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    quoted = str(error.value).replace(str(bad), "/etc/edge-fer/config.yaml")
    assert f"(e.g. `{quoted}`)" in failures
    fields = {f.name: f for f in dataclasses.fields(Config)}
    timeout = fields["reload_timeout_s"]
    low, high = timeout.metadata["ge"], timeout.metadata["le"]
    assert f"`reload_timeout_s` ({low:g}-{high:g} s, default {timeout.default:g})" in daemon
    backoff = fields["reconnect_max_backoff_s"].default
    assert f"back-off ({backoff:g} s cap by default)" in failures


def test_the_architecture_page_names_every_folder_of_the_package():
    """ARCHITECTURE.md's folder table stays the package's: no folder left out, none made up."""
    page = text(ROOT / "ARCHITECTURE.md")
    folders = {p.name for p in (ROOT / "edge_fer").iterdir() if p.is_dir() and not p.name.startswith("_")}
    folders -= {"__pycache__"}
    named = set(re.findall(r"edge_fer/(\w+)/", page)) | set(re.findall(r"`(\w+)/`", page))
    assert folders - named == set(), f"ARCHITECTURE.md leaves out edge_fer/{sorted(folders - named)}"
    for folder in re.findall(r"`edge_fer/(\w+)/`", page):
        assert folder in folders, f"ARCHITECTURE.md names edge_fer/{folder}/, which does not exist"
