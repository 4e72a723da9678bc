import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fer.monitor.sensors import (
    HwmonPower,
    RaplPower,
    parse_pmic,
    parse_temp,
    parse_throttled,
)

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.fast
def test_pmic_pairs_current_and_voltage_per_rail():
    reading = parse_pmic((FIXTURES / "pmic_read_adc_pi5.txt").read_text())
    assert len(reading.rails_w) == 12  # EXT5V_V and BATT_V have no current: not summed
    assert reading.core_w == pytest.approx(5.03652 * 0.8936988)
    pairs = [
        (0.0585558, 3.610692),
        (0.06148359, 3.299826),
        (0.1327265, 1.816848),
        (0.139558, 1.101098),
        (0.009804, 0.6036624),
        (0.1981138, 1.102929),
        (0.3415755, 0.8029296),
        (5.03652, 0.8936988),
        (0.00006105, 3.299447),
        (0.00054945, 3.304026),
        (0.00531135, 0.7961898),
        (0.0216117, 4.9245),
    ]
    assert reading.total_w == pytest.approx(sum(a * v for a, v in pairs))
    assert reading.total_w == pytest.approx(5.9216, abs=1e-3)
    idle = parse_pmic((FIXTURES / "pmic_read_adc_pi5_idle.txt").read_text())
    assert idle.total_w < reading.total_w and idle.core_w == pytest.approx(0.56259 * 0.7679846)
    assert parse_pmic('error=2 error_msg="Command not registered"') is None


@pytest.mark.fast
def test_throttled_flags_and_temperature():
    state = parse_throttled("throttled=0x50005")
    assert state.raw == 0x50005
    assert state.flags == ["under-voltage", "throttled", "under-voltage-occurred", "throttling-occurred"]
    assert state.now == ["under-voltage", "throttled"]
    assert parse_throttled("throttled=0x0").flags == []
    assert parse_throttled("throttled=0xe0000").flags == [
        "arm-frequency-capping-occurred",
        "throttling-occurred",
        "soft-temp-limit-occurred",
    ]
    assert parse_throttled("garbage") is None
    assert parse_temp("temp=51.6'C") == 51.6 and parse_temp("") is None


@pytest.mark.fast
def test_hwmon_prefers_average_and_sums_sensors(tmp_path):
    (tmp_path / "hwmon0").mkdir()
    (tmp_path / "hwmon0/name").write_text("ina219\n")
    (tmp_path / "hwmon0/power1_input").write_text("3100000\n")
    (tmp_path / "hwmon0/power1_average").write_text("3000000\n")
    (tmp_path / "hwmon1").mkdir()
    (tmp_path / "hwmon1/power1_input").write_text("1500000\n")
    (tmp_path / "hwmon2").mkdir()
    (tmp_path / "hwmon2/temp1_input").write_text("40000\n")
    power = HwmonPower(tmp_path)
    assert power.available() and power.read() == (pytest.approx(4.5), None)
    assert not HwmonPower(tmp_path / "none").available()


@pytest.mark.fast
def test_rapl_turns_energy_counters_into_watts_across_a_wrap(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True)
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "intel-rapl:0:0/energy_uj").write_text("5\n")  # a sub-zone: not double counted
    (zone / "energy_uj").write_text("262143000000\n")
    now = [100.0]
    rapl = RaplPower(tmp_path, clock=lambda: now[0])
    assert rapl.available() and rapl.read() is None  # primes the counter
    now[0] = 102.0
    (zone / "energy_uj").write_text("19671150\n")  # wrapped past the max range
    watts, core = rapl.read()
    assert watts == pytest.approx((262143328850 - 262143000000 + 19671150) / 1e6 / 2)
    (zone / "energy_uj").chmod(0)
    if os.geteuid() != 0:
        assert rapl.read() is None  # unreadable (RAPL is root-only on many kernels): n/a


def monitor(args: list[str], env: dict | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.monitor", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture()
def fake_pi_path(tmp_path) -> dict:
    """PATH with a vcgencmd that answers like a Pi 5's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for f in ("fake_vcgencmd", "pmic_read_adc_pi5.txt", "pmic_read_adc_pi5_idle.txt"):
        shutil.copy(FIXTURES / f, bin_dir / f)
    (bin_dir / "fake_vcgencmd").rename(bin_dir / "vcgencmd")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_monitor_without_daemon_says_na(tmp_path, fake_pi_path):
    code, out, err = monitor(
        [
            "--seconds",
            "2",
            "--interval",
            "0.25",
            "--json",
            "--stats",
            str(tmp_path / "none.json"),
            "--csv",
            str(tmp_path / "m.csv"),
        ],
        fake_pi_path,
    )
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["power_source"] == "power from pi5-pmic"
    assert summary["figures"]["power_w"]["mean"] == pytest.approx(5.9216, abs=1e-3)
    assert summary["energy_j"] == pytest.approx(5.9216 * summary["seconds"], rel=0.3)
    assert summary["throttle_flags_seen"] == [
        "throttled",
        "throttling-occurred",
        "under-voltage",
        "under-voltage-occurred",
    ]
    assert summary["figures"]["daemon_fps"] is None and not summary["daemon_seen"]
    assert "daemon not running" in summary["daemon"]
    assert "daemon_fps" in out and "n/a" in out
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0].startswith("time,power_w,core_power_w") and len(rows) >= 5


def test_monitor_next_to_a_running_daemon(tmp_path, video_args):
    stats = tmp_path / "stats.json"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_fer.apps.daemon", *video_args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if stats.exists():
                break
            time.sleep(0.1)
        code, out, err = monitor(["--seconds", "2", "--interval", "0.5", "--json", "--stats", str(stats)])
    finally:
        daemon.terminate()
        daemon.wait(5)
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    figures = summary["figures"]
    assert summary["daemon_seen"] and figures["daemon_fps"]["mean"] > 0
    assert figures["daemon_rss_mb"]["mean"] > 50 and figures["daemon_threads"]["min"] >= 1
    assert figures["daemon_total_p50_ms"]["mean"] > 0
    assert figures["cpu_percent"] is not None and figures["mem_available_mb"]["min"] > 0


@pytest.mark.fast
def test_monitor_bad_flags():
    code, _, err = monitor(["--interval", "0"])
    assert code == 2 and "--interval must be a number of seconds" in err


def _edge_fer_imports(path: Path) -> set[str]:
    """Every edge_fer module a file imports, at the top or inside a function."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] == "edge_fer"}


def test_the_monitor_depends_on_shared_pieces_not_on_the_daemon():
    """monitor -> core/contracts and outputs -> core/contracts: the monitor never imports the
    daemon's outputs or runtime, and the shared pieces import neither program."""
    package = ROOT / "edge_fer"
    monitor_files = [*sorted((package / "monitor").glob("*.py")), package / "apps" / "monitor.py"]
    for path in monitor_files:
        for name in _edge_fer_imports(path):
            assert name.split(".")[1] in ("core", "contracts", "monitor"), f"{path.name} imports {name}"
    for path in sorted((package / "core").glob("*.py")):
        for name in _edge_fer_imports(path):
            assert name.split(".")[1] == "core", f"{path.name} imports {name}"
    # a contract may name the definitions it carries (the model card: the classes and the
    # preprocessing spec), never a program's modules
    definitions = ("edge_fer.emotions.labels", "edge_fer.emotions.preprocess")
    for path in sorted((package / "contracts").glob("*.py")):
        for name in _edge_fer_imports(path):
            assert name.split(".")[1] in ("core", "contracts") or name in definitions, (
                f"{path.name} imports {name}"
            )
