"""Resource monitor: samples CPU, memory, load, temperature and throttling, EWMA-smoothed.

`SystemReader` reads the machine (psutil, plus sysfs/procfs files under a root path so tests can
feed real fake files); a reading that fails gives None, never an exception. `Monitor` samples
periodically and keeps the latest `Sample`; `detect_environment` names the board and picks the
initial tuning profile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from voicebox.config import MonitorConfig
from voicebox.logs import event

log = logging.getLogger(__name__)

THERMAL_PATH = "sys/class/thermal/thermal_zone0/temp"
THROTTLED_PATHS = (
    "sys/devices/platform/soc/soc:firmware/get_throttled",
    "run/voicebox/throttled",  # written by an optional root timer running `vcgencmd`
)
THROTTLED_GLOB = "sys/devices/platform/*/*firmware*/get_throttled"  # other device-tree names
MODEL_PATH = "proc/device-tree/model"
SENSOR_NAMES = ("cpu_thermal", "coretemp", "k10temp", "zenpower", "soc_thermal", "cpu-thermal")
THROTTLE_BITS = {
    0x1: "under_voltage",
    0x2: "freq_capped",
    0x4: "throttled",
    0x8: "soft_temp_limit",
    0x10000: "under_voltage_occurred",
    0x20000: "freq_capped_occurred",
    0x40000: "throttled_occurred",
    0x80000: "soft_temp_limit_occurred",
}
THROTTLED_NOW_MASK = 0xF
EWMA_ALPHA = 0.3


@dataclass(frozen=True)
class Sample:
    """One reading. cpu_percent, proc_cpu_percent and temp_c are EWMA-smoothed; *_raw are not."""

    time: float  # time.monotonic() of the reading
    cpu_percent: float  # whole system, 0..100
    proc_cpu_percent: float  # this process, 100 = one core
    mem_available_mb: float
    rss_mb: float
    load1: float
    temp_c: float | None
    throttled: int | None  # get_throttled bits; None when unreadable
    cpu_percent_raw: float
    proc_cpu_percent_raw: float
    temp_c_raw: float | None
    cores: int
    unreadable: tuple[str, ...] = ()  # psutil readings that failed (e.g. under ProcSubset=pid)

    @property
    def throttled_now(self) -> bool:
        """Under-voltage, frequency capping, throttling or the soft limit is active right now."""
        return bool(self.throttled is not None and self.throttled & THROTTLED_NOW_MASK)


@dataclass(frozen=True)
class Environment:
    """What the daemon runs on, detected once at start-up."""

    board: str  # device-tree model, or the CPU model off a Pi
    cores: int
    ram_mb: int
    profile: str  # "pi5-2gb", "pi5", "pi", "small" or "desktop"


def throttle_flags(bits: int | None) -> list[str]:
    """Names of the set get_throttled bits."""
    if bits is None:
        return []
    return [name for mask, name in THROTTLE_BITS.items() if bits & mask]


def parse_throttled(text: str) -> int | None:
    """`50000`, `0x50000` or vcgencmd's `throttled=0x50000` (hex) to an int; None if garbled."""
    value = text.strip().strip("\x00").rpartition("=")[2].strip()
    try:
        return int(value, 16)
    except ValueError:
        return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None


class SystemReader:
    """Reads the machine: psutil for CPU, memory and load; files under `root` for the rest."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        found = sorted(str(p.relative_to(root)) for p in root.glob(THROTTLED_GLOB))
        self._throttled_paths = THROTTLED_PATHS + tuple(
            p for p in found if p not in THROTTLED_PATHS
        )
        self._process: psutil.Process | None = None
        try:
            self._process = psutil.Process()
        except (psutil.Error, OSError):
            self._process = None
        self.prime()

    def prime(self) -> None:
        """psutil's cpu_percent measures since its previous call: the first call only starts it."""
        self.cpu_percent()
        self.proc_cpu_percent()

    def cpu_percent(self) -> float | None:
        try:
            return float(psutil.cpu_percent(interval=None))
        except (OSError, psutil.Error):
            return None

    def proc_cpu_percent(self) -> float | None:
        if self._process is None:
            return None
        try:
            return float(self._process.cpu_percent(interval=None))
        except (OSError, psutil.Error):
            return None

    def mem_available_mb(self) -> float | None:
        try:
            return psutil.virtual_memory().available / 2**20
        except (OSError, psutil.Error):
            return None

    def rss_mb(self) -> float | None:
        if self._process is None:
            return None
        try:
            return self._process.memory_info().rss / 2**20
        except (OSError, psutil.Error):
            return None

    def load1(self) -> float | None:
        try:
            return os.getloadavg()[0]
        except OSError:
            return None

    def cores(self) -> int:
        """Online CPUs from sysfs ("0-3" or "0,2-3"); os.cpu_count() if unreadable."""
        text = _read_text(self.root / "sys/devices/system/cpu/online")
        if text:
            try:
                count = 0
                for part in text.strip().split(","):
                    lo, _, hi = part.partition("-")
                    count += int(hi or lo) - int(lo) + 1
                if count > 0:
                    return count
            except ValueError:
                pass
        return os.cpu_count() or 1

    def ram_mb(self) -> int:
        """MemTotal from /proc/meminfo; psutil if unreadable."""
        text = _read_text(self.root / "proc/meminfo")
        for line in (text or "").splitlines():
            if line.startswith("MemTotal:"):
                try:
                    return int(line.split()[1]) // 1024
                except (IndexError, ValueError):
                    break
        try:
            return int(psutil.virtual_memory().total // 2**20)
        except (OSError, psutil.Error):
            return 0

    def temp_c(self) -> float | None:
        """SoC temperature: thermal_zone0 (milli-°C), else psutil's CPU sensor on a real root."""
        text = _read_text(self.root / THERMAL_PATH)
        if text is not None:
            try:
                return int(text.strip()) / 1000.0
            except ValueError:
                return None
        if self.root != Path("/"):
            return None
        try:
            sensors = psutil.sensors_temperatures()
        except (OSError, psutil.Error, AttributeError):
            return None
        for name in SENSOR_NAMES:
            for entry in sensors.get(name, []):
                if math.isfinite(entry.current):
                    return float(entry.current)
        return None

    def throttled(self) -> int | None:
        for rel in self._throttled_paths:
            text = _read_text(self.root / rel)
            if text is not None:
                return parse_throttled(text)
        return None

    def model(self) -> str | None:
        """The device-tree model (NUL-terminated in the file), e.g. "Raspberry Pi 5 Model B"."""
        text = _read_text(self.root / MODEL_PATH)
        if text is None:
            return None
        model = text.split("\x00", 1)[0].strip()
        return model or None

    def cpu_model(self) -> str | None:
        text = _read_text(self.root / "proc/cpuinfo")
        for line in (text or "").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
        return None


def profile_for(board: str, cores: int, ram_mb: int) -> str:
    """The initial tuning profile: a 2 GB Pi 5 is not a desktop."""
    if "Raspberry Pi 5" in board:
        return "pi5-2gb" if ram_mb <= 2200 else "pi5"
    if "Raspberry Pi" in board:
        return "pi"
    if cores <= 2 or ram_mb < 3000:
        return "small"
    return "desktop"


def detect_environment(root: Path = Path("/"), reader: SystemReader | None = None) -> Environment:
    """Board (device tree, else CPU model), cores, RAM and the profile derived from them."""
    reader = reader or SystemReader(root)
    board = reader.model() or reader.cpu_model() or "unknown"
    cores, ram_mb = reader.cores(), reader.ram_mb()
    profile = profile_for(board, cores, ram_mb)
    return Environment(board=board, cores=cores, ram_mb=ram_mb, profile=profile)


def _ewma(previous: float | None, value: float | None, alpha: float) -> float | None:
    if value is None:
        return previous
    if previous is None:
        return value
    return previous + alpha * (value - previous)


class Monitor:
    """Samples the machine every `cfg.interval_s` and keeps the latest smoothed `Sample`."""

    def __init__(
        self, cfg: MonitorConfig, reader: SystemReader | None = None, alpha: float = EWMA_ALPHA
    ) -> None:
        self.cfg = cfg
        self.reader = reader or SystemReader()
        self.alpha = alpha
        self.samples = 0
        self.cores = self.reader.cores()
        self._latest: Sample | None = None
        self._reported: set[str] = set()

    def sample(self, now: float | None = None) -> Sample:
        """Take one reading now and smooth it into the running averages."""
        r = self.reader
        prev = self._latest
        raw: dict[str, float | None] = {
            "cpu": r.cpu_percent(),
            "proc_cpu": r.proc_cpu_percent(),
            "mem_available": r.mem_available_mb(),
            "rss": r.rss_mb(),
            "load1": r.load1(),
        }
        unreadable = tuple(name for name, value in raw.items() if value is None)
        for name in unreadable:
            if name not in self._reported:  # say it once, not every second
                self._reported.add(name)
                event(log, "monitor.unreadable", level=logging.WARNING, reading=name)
        temp = r.temp_c()
        cpu = _ewma(prev.cpu_percent if prev else None, raw["cpu"], self.alpha)
        proc = _ewma(prev.proc_cpu_percent if prev else None, raw["proc_cpu"], self.alpha)
        sample = Sample(
            time=time.monotonic() if now is None else now,
            cpu_percent=cpu or 0.0,
            proc_cpu_percent=proc or 0.0,
            mem_available_mb=_pick(raw["mem_available"], prev.mem_available_mb if prev else 0.0),
            rss_mb=_pick(raw["rss"], prev.rss_mb if prev else 0.0),
            load1=_pick(raw["load1"], prev.load1 if prev else 0.0),
            temp_c=_ewma(prev.temp_c if prev else None, temp, self.alpha),
            throttled=r.throttled(),
            cpu_percent_raw=_pick(raw["cpu"], 0.0),
            proc_cpu_percent_raw=_pick(raw["proc_cpu"], 0.0),
            temp_c_raw=temp,
            cores=self.cores,
            unreadable=unreadable,
        )
        self._latest = sample
        self.samples += 1
        return sample

    async def run(self, on_sample: Callable[[Sample], None]) -> None:
        """Sample forever (cancel to stop); the first reading comes one interval after the start."""
        self.reader.prime()
        while True:
            await asyncio.sleep(self.cfg.interval_s)
            sample = self.sample()
            try:
                on_sample(sample)
            except Exception as exc:  # a consumer bug must not stop the monitor
                event(log, "monitor.callback_failed", level=logging.ERROR, error=repr(exc))

    def latest(self) -> Sample | None:
        return self._latest

    def snapshot(self) -> dict[str, Any]:
        """The latest reading as plain JSON-able values, for `voicebox status`."""
        sample = self._latest
        if sample is None:
            return {"samples": 0}
        data: dict[str, Any] = {k: _round(v) for k, v in asdict(sample).items()}
        data["unreadable"] = list(sample.unreadable)
        data["throttled_flags"] = throttle_flags(sample.throttled)
        data["samples"] = self.samples
        return data


def _pick(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


def _round(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def health_line_fields(sample: Sample, counters: dict[str, Any]) -> dict[str, Any]:
    """Fields of the periodic one-line health summary: the machine, then the daemon's counters."""
    fields: dict[str, Any] = {
        "cpu_percent": round(sample.cpu_percent, 1),
        "proc_cpu_percent": round(sample.proc_cpu_percent, 1),
        "load1": round(sample.load1, 2),
        "mem_available_mb": round(sample.mem_available_mb),
        "rss_mb": round(sample.rss_mb, 1),
        "temp_c": None if sample.temp_c is None else round(sample.temp_c, 1),
        "throttled": None if sample.throttled is None else hex(sample.throttled),
        "throttled_now": ",".join(throttle_flags(sample.throttled & THROTTLED_NOW_MASK))
        if sample.throttled_now and sample.throttled is not None
        else None,
    }
    fields.update(counters)
    return fields
