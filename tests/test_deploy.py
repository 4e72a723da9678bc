import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted(p for p in (ROOT / "systemd").iterdir() if p.is_file())


@pytest.mark.fast
def test_units_pass_systemd_analyze_verify(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    # verify checks that ExecStart binaries exist: point them at this interpreter's venv
    # (the tests run as .venv/bin/python -m pytest, with .venv/bin not on PATH).
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "edge-fer-monitor").exists():
        bin_dir = Path(shutil.which("edge-fer") or "").parent
    if not (bin_dir / "edge-fer-monitor").exists():
        pytest.skip("edge-fer is not installed in this environment")
    for unit in UNITS:
        text = unit.read_text().replace("/opt/edge-fer/venv/bin/", f"{bin_dir}/")
        (tmp_path / unit.name).write_text(text)
    proc = subprocess.run(
        [exe, "verify", *sorted(str(p) for p in tmp_path.iterdir())], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


@pytest.mark.fast
def test_service_unit_has_the_promised_settings():
    text = (ROOT / "systemd" / "edge-fer.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=edge-fer",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DevicePolicy=closed",
        "MemoryMax=",
        "RuntimeDirectory=edge-fer",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "--config /etc/edge-fer/config.yaml",
    ):
        assert line in text


@pytest.mark.fast
def test_every_service_scores_at_most_2_in_systemd_analyze_security(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    import re

    scores = {}
    for unit in UNITS:
        if unit.suffix != ".service":
            continue
        shutil.copy(unit, tmp_path / unit.name)
        proc = subprocess.run(
            [exe, "security", "--offline=yes", "--no-pager", str(tmp_path / unit.name)],
            capture_output=True,
            text=True,
        )
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
        assert m, proc.stdout[-500:] + proc.stderr
        scores[unit.name] = float(m[1])
    assert scores and all(v <= 2.0 for v in scores.values()), scores


@pytest.mark.fast
def test_keyboards_are_readable_only_with_the_console_window_drop_in():
    base = (ROOT / "systemd" / "edge-fer.service").read_text()
    assert "char-input" not in base and " input" not in base.split("SupplementaryGroups=")[1]
    drop_in = (ROOT / "systemd" / "edge-fer.service.d" / "console-window.conf").read_text()
    assert "DeviceAllow=char-input r" in drop_in and "SupplementaryGroups=input tty" in drop_in
    dry = install("--dry-run")
    assert (
        "usermod -a -G video,render edge-fer" in dry.stdout
        and "rm -f /etc/systemd/system/edge-fer.service.d/console-window.conf" in dry.stdout
    )
    dry = install("--dry-run", "--console-window")
    assert "usermod -a -G video,render,input,tty edge-fer" in dry.stdout
    assert "console-window.conf" in dry.stdout


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "install.sh"), *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.fast
def test_install_dry_run_changes_nothing():
    proc = install("--dry-run")
    assert proc.returncode == 0, proc.stderr
    for step in (
        "apt-get install -y python3-venv python3-pip python3-picamera2 python3-systemd",
        "useradd --system",
        "python3 -m venv --system-site-packages /opt/edge-fer/venv",
        "/opt/edge-fer/venv/bin/edge-fer-build-runtime",
        "--no-same-owner",
        "chown -R root:root /opt/edge-fer",
        "pip install -c /opt/edge-fer/deploy/constraints-pi.txt /opt/edge-fer[display]",
        "/opt/edge-fer/venv/bin/pip install --no-deps -r /opt/edge-fer/deploy/requirements-runtime.txt",
        "systemctl enable --now edge-fer.service",
    ):
        assert step in proc.stdout


@pytest.mark.fast
def test_install_for_an_image_skips_what_only_a_running_pi_has():
    proc = install("--dry-run", "--image")
    assert proc.returncode == 0, proc.stderr
    assert "python3-picamera2" not in proc.stdout
    assert "apt-get install -y python3-venv python3-pip python3-systemd" in proc.stdout
    assert "+ systemctl enable edge-fer.service edge-fer-monitor-snapshot.timer" in proc.stdout
    assert "--now" not in proc.stdout and "daemon-reload" not in proc.stdout


def _requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


@pytest.mark.fast
def test_the_pi_runtime_is_torch_free_and_pins_the_trained_executorch():
    """The base install (what the Pi gets) has no torch; the runtime's executorch --no-deps pin
    is the one training exports with; numpy stays on apt's 1.x for picamera2's extensions."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    base = _requirement_lines(cfg["options"]["install_requires"])
    train = _requirement_lines(cfg["options.extras_require"]["train"])
    assert not [r for r in base if r.startswith(("torch", "executorch", "torchao"))], base
    runtime = _requirement_lines((ROOT / "deploy/requirements-runtime.txt").read_text())
    assert runtime == [r for r in train if r.startswith("executorch")] == ["executorch==1.5.1"]
    constraints = _requirement_lines((ROOT / "deploy/constraints-pi.txt").read_text())
    assert "numpy<2" in constraints and "opencv-python-headless<4.12" in constraints
    assert "numpy>=1.24" in base  # Bookworm's apt numpy is 1.24.2


@pytest.mark.fast
def test_compare_events_pairs_faces_by_box_and_counts_label_flips(tmp_path):
    compare_events = load_script(ROOT / "deploy" / "compare_events.py")

    def face(box, label, smoothed=None):
        return {"id": 1, "box": box, "label": label, "score": 0.5, "smoothed": smoothed or label}

    ref = {0: [face([10, 10, 50, 50], "happy"), face([200, 10, 50, 50], "sad")], 1: [], 2: []}
    other = {0: [face([202, 11, 50, 50], "sad"), face([11, 10, 50, 50], "fear", "happy")], 1: []}
    result = compare_events.compare(ref, other)
    assert (result["frames"], result["faces_paired"], result["faces_unpaired"]) == (2, 2, 0)
    assert result["label_agreement"] == 0.5 and result["smoothed_agreement"] == 1.0
    assert result["label_flips"][0]["other"][0] == "fear"
    far = {0: [face([400, 400, 50, 50], "happy")], 1: []}
    assert compare_events.compare(ref, far)["faces_unpaired"] == 3
    (tmp_path / "bad.jsonl").write_text("not json\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "deploy/compare_events.py"), str(tmp_path / "bad.jsonl"),
         str(tmp_path / "bad.jsonl")], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and "is not a daemon event" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.fast
@pytest.mark.arm64
def test_the_pi_install_works_in_an_emulated_arm64_root():
    """deploy/check_arm64.sh end to end (~15-30 min: debootstrap once, then install.sh, the
    runner build, the daemon and the monitor under qemu-user), and the arm64 daemon's labels
    against this machine's on the same video."""
    import json
    import os

    if not os.environ.get("EDGE_FER_ARM64"):
        pytest.skip("set EDGE_FER_ARM64=1 to install into an emulated arm64 root (slow; root and network)")
    missing = [t for t in ("mmdebstrap", "qemu-aarch64-static", "chroot") if not shutil.which(t)]
    if missing:
        fix = "apt-get install mmdebstrap qemu-user-static binfmt-support"
        pytest.skip(f"missing {', '.join(missing)}: {fix}")
    if os.geteuid() != 0:
        pytest.skip("check_arm64.sh needs root (chroot and bind mounts)")
    proc = subprocess.run(["bash", str(ROOT / "deploy/check_arm64.sh")], capture_output=True, text=True,
                          timeout=3 * 3600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = ROOT / "build/arm64/out"
    model = json.loads((out / "model-agreement.json").read_text())  # identical inputs
    assert model["faces"] > 3000 and model["model_agreement"] >= 0.98, model
    daemon = json.loads((out / "agreement.json").read_text())  # same lossless frames, own Haar
    assert daemon["faces_paired"] > 0 and daemon["label_agreement"] >= 0.97, daemon
    report = json.loads((out / "report-arm64.json").read_text())
    assert report["frames"] > 0 and report["face_detections"] > 0


@pytest.mark.fast
def test_install_into_a_prefix_is_idempotent_and_uninstall_keeps_edits(tmp_path):
    root = tmp_path / "root"
    assert install("--prefix", str(root), "--no-venv").returncode == 0
    config = root / "etc/edge-fer/config.yaml"
    assert config.read_text() == (ROOT / "deploy/config.example.yaml").read_text()
    assert (root / "opt/edge-fer/edge_fer/apps/daemon.py").is_file()
    assert (root / "opt/edge-fer/edge_fer/models/edge_fer_student.pte").is_file()
    assert (root / "opt/edge-fer/edge_fer/native/et_runner.cpp").is_file()
    assert not (root / "opt/edge-fer/edge_fer/native/_build").exists()  # built for this venv only
    assert sorted(p.name for p in (root / "etc/systemd/system").iterdir()) == sorted(p.name for p in UNITS)
    config.write_text(config.read_text() + "\nlog_level: DEBUG\n")
    again = install("--prefix", str(root), "--no-venv")
    assert again.returncode == 0 and "keeping existing" in again.stdout
    assert config.read_text().endswith("log_level: DEBUG\n")
    gone = install("--prefix", str(root), "--uninstall")
    assert gone.returncode == 0 and not (root / "opt/edge-fer").exists()
    assert not list((root / "etc/systemd/system").iterdir())
    assert config.exists() and "keeping your edited" in gone.stdout
    assert install("--bogus").returncode == 2


def test_a_regular_install_carries_the_model_and_the_runner_source(tmp_path):
    """install.sh does a non-editable install: the wheel must hold the package data."""
    import zipfile

    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-1500:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("edge_fer-*.whl"))).namelist())
    for needed in ("edge_fer/models/edge_fer_student.pte", "edge_fer/models/edge_fer_student.json",
                   "edge_fer/models/face_detection_yunet_2026may.onnx", "edge_fer/models/LICENSE-YUNET",
                   "edge_fer/native/et_runner.cpp", "edge_fer/outputs/mqtt.py",
                   "edge_fer/samples/demo_faces_640x480.mp4", "edge_fer/samples/ATTRIBUTION.md",
                   "edge_fer/samples/LICENSE-CC-BY-4.0.md",
                   "edge_fer/samples/london_030_smiling.jpg"):  # fmt: skip
        assert needed in names, needed
