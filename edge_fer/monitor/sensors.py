"""System sensors: Pi 5 PMIC power, hwmon and RAPL power, thermals, throttling, clocks.

Every reader returns None (with a reason kept for the report) instead of raising when a
tool or file is missing, so the monitor degrades to "n/a" and never crashes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

VCGENCMD_TIMEOUT_S = 2.0
_PMIC_LINE = re.compile(
    r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)="
    r"(?P<value>[-+]?\d*\.?\d+)[AV]\s*$"
)
# vcgencmd get_throttled bits (Raspberry Pi documentation, "get_throttled").
THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "throttled",
    3: "soft-temp-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capping-occurred",
    18: "throttling-occurred",
    19: "soft-temp-limit-occurred",
}


def vcgencmd(*args: str) -> str | None:
    """Run `vcgencmd ARGS`; None if it is missing, fails or reports an error."""
    exe = shutil.which("vcgencmd")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or proc.stdout.startswith("error="):
        return None
    return proc.stdout


@dataclass
class PmicReading:
    total_w: float
    core_w: float | None
    rails_w: dict[str, float]


def parse_pmic(text: str) -> PmicReading | None:
    """Parse `vcgencmd pmic_read_adc`: pair each rail's current (X_A) and voltage (X_V)."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            (amps if m["kind"] == "A" else volts)[m["rail"]] = float(m["value"])
    rails = {r: amps[r] * volts[r] for r in amps if r in volts}
    if not rails:
        return None
    return PmicReading(sum(rails.values()), rails.get("VDD_CORE"), rails)


@dataclass
class ThrottleState:
    raw: int
    flags: list[str]

    @property
    def now(self) -> list[str]:
        return [f for bit, f in THROTTLE_BITS.items() if bit < 16 and self.raw & (1 << bit)]


def parse_throttled(text: str) -> ThrottleState | None:
    """Parse `vcgencmd get_throttled` ("throttled=0x50005") into named flags."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not m:
        return None
    raw = int(m[1], 0)
    return ThrottleState(raw, [name for bit, name in THROTTLE_BITS.items() if raw & (1 << bit)])


def parse_temp(text: str) -> float | None:
    """Parse `vcgencmd measure_temp` ("temp=51.6'C")."""
    m = re.search(r"temp=([-\d.]+)", text)
    return float(m[1]) if m else None


def _read_number(path: Path) -> float | None:
    try:
        return float(path.read_text().strip())
    except (OSError, ValueError):
        return None


class PmicPower:
    """Pi 5 SoC power from the PMIC's ADCs through vcgencmd."""

    name = "pi5-pmic"

    def available(self) -> bool:
        text = vcgencmd("pmic_read_adc")
        return text is not None and parse_pmic(text) is not None

    def read(self) -> tuple[float, float | None] | None:
        text = vcgencmd("pmic_read_adc")
        reading = parse_pmic(text) if text else None
        return (reading.total_w, reading.core_w) if reading else None


class HwmonPower:
    """hwmon power sensors (an INA2xx on I2C shows up here): powerN_input/average in uW."""

    name = "hwmon"

    def __init__(self, root: Path = Path("/sys/class/hwmon")) -> None:
        self.files = sorted(
            p for pattern in ("power*_input", "power*_average") for p in Path(root).glob(f"*/{pattern}")
        )
        # Prefer the average where a chip offers both, one file per sensor.
        chosen: dict[tuple[Path, str], Path] = {}
        for p in self.files:
            key = (p.parent, p.name.split("_")[0])
            if key not in chosen or p.name.endswith("_average"):
                chosen[key] = p
        self.files = sorted(chosen.values())

    def available(self) -> bool:
        return any(_read_number(p) is not None for p in self.files)

    def read(self) -> tuple[float, float | None] | None:
        values = [v for v in (_read_number(p) for p in self.files) if v is not None]
        return (sum(values) / 1e6, None) if values else None


class RaplPower:
    """x86 RAPL package energy counters (energy_uj) under /sys/class/powercap, as watts."""

    name = "rapl"

    def __init__(
        self, root: Path = Path("/sys/class/powercap"), clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Top-level zones (intel-rapl:0, intel-rapl:1) are packages; sub-zones are parts of them.
        self.zones = sorted(
            p for p in Path(root).glob("*rapl:*") if p.name.count(":") == 1 and (p / "energy_uj").exists()
        )
        self.clock = clock
        self._last: tuple[float, list[float]] | None = None

    def available(self) -> bool:
        return any(_read_number(z / "energy_uj") is not None for z in self.zones)

    def read(self) -> tuple[float, float | None] | None:
        now = self.clock()
        energies = [_read_number(z / "energy_uj") for z in self.zones]
        if any(e is None for e in energies):
            return None
        last, self._last = self._last, (now, energies)
        if last is None or now <= last[0]:
            return None  # the first call only primes the counters
        total = 0.0
        for zone, before, after in zip(self.zones, last[1], energies, strict=True):
            delta = after - before
            if delta < 0:  # the counter wrapped
                delta += _read_number(zone / "max_energy_range_uj") or 0.0
            total += delta
        return total / 1e6 / (now - last[0]), None


class PowerSource(Protocol):
    """A way to read SoC power: (total W, VDD_CORE W or None), or None when a read fails."""

    name: str

    def available(self) -> bool: ...

    def read(self) -> tuple[float, float | None] | None: ...


def choose_power_source(
    hwmon_root: Path = Path("/sys/class/hwmon"), powercap_root: Path = Path("/sys/class/powercap")
) -> tuple[PowerSource | None, str]:
    """The first power source that works here, and a line saying which (or why none)."""
    for source in (PmicPower(), HwmonPower(hwmon_root), RaplPower(powercap_root)):
        if source.available():
            return source, f"power from {source.name}"
    return None, (
        "power n/a: no vcgencmd pmic_read_adc (not a Pi 5), no hwmon power sensor "
        f"under {hwmon_root}, no readable RAPL counters under {powercap_root}"
    )


@dataclass
class Thermals:
    temp_c: float | None
    throttle: ThrottleState | None
    cpu_mhz: float | None
    notes: list[str] = field(default_factory=list)


def read_thermals(
    thermal_root: Path = Path("/sys/class/thermal"),
    cpufreq: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"),
) -> Thermals:
    """SoC temperature (sysfs, else vcgencmd), throttling flags and the CPU clock."""
    temp = None
    zones = sorted(Path(thermal_root).glob("thermal_zone*"))
    preferred = [
        z
        for z in zones
        if (z / "type").exists()
        and (z / "type").read_text().strip() in ("cpu-thermal", "x86_pkg_temp", "soc")
    ]
    for zone in preferred + zones:
        milli = _read_number(zone / "temp")
        if milli is not None:
            temp = milli / 1000.0
            break
    if temp is None:
        text = vcgencmd("measure_temp")
        temp = parse_temp(text) if text else None
    text = vcgencmd("get_throttled")
    throttle = parse_throttled(text) if text else None
    khz = _read_number(cpufreq)
    return Thermals(temp, throttle, khz / 1000.0 if khz else None)
