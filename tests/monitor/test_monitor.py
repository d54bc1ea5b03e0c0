"""Monitor: the real reader, a fake root of real files, smoothing, priming and profiles."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from voicebox.config import MonitorConfig
from voicebox.monitor import (
    Monitor,
    Sample,
    SystemReader,
    detect_environment,
    health_line_fields,
    parse_throttled,
    profile_for,
    throttle_flags,
)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_real_reader_returns_sane_values() -> None:
    reader = SystemReader()
    cpu = reader.cpu_percent()
    assert cpu is not None and 0.0 <= cpu <= 100.0
    mem = reader.mem_available_mb()
    assert mem is not None and mem > 1
    rss = reader.rss_mb()
    assert rss is not None and 5 < rss < 2000
    load = reader.load1()
    assert load is not None and load >= 0
    assert reader.cores() >= 1
    assert reader.ram_mb() > mem / 2
    temp = reader.temp_c()
    assert temp is None or -40 < temp < 150


def test_fake_root_parses_thermal_throttled_and_model(tmp_path: Path) -> None:
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48312\n")
    write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "50005\n")
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    reader = SystemReader(tmp_path)
    assert reader.temp_c() == pytest.approx(48.312)
    assert reader.throttled() == 0x50005
    assert reader.model() == "Raspberry Pi 5 Model B Rev 1.0"
    sample = Monitor(MonitorConfig(), reader).sample()
    assert sample.throttled == 0x50005 and sample.throttled_now
    assert sample.temp_c == pytest.approx(48.312)


def test_missing_or_garbled_files_read_as_none(tmp_path: Path) -> None:
    reader = SystemReader(tmp_path)
    assert reader.temp_c() is None
    assert reader.throttled() is None
    assert reader.model() is None
    write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "n/a\n")
    write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "zz\n")
    assert reader.temp_c() is None
    assert reader.throttled() is None
    sample = Monitor(MonitorConfig(), reader).sample()
    assert sample.temp_c is None and sample.throttled is None and not sample.throttled_now


def test_throttled_formats_and_flags() -> None:
    assert parse_throttled("throttled=0x50000\n") == 0x50000
    assert parse_throttled("0x4") == 4
    assert parse_throttled("0\n") == 0
    assert parse_throttled("") is None
    assert throttle_flags(0x50000) == ["under_voltage_occurred", "throttled_occurred"]
    assert throttle_flags(0x6) == ["freq_capped", "throttled"]
    assert throttle_flags(None) == []


def test_temperature_is_ewma_smoothed(tmp_path: Path) -> None:
    temp = "sys/class/thermal/thermal_zone0/temp"
    write(tmp_path, temp, "50000")
    monitor = Monitor(MonitorConfig(), SystemReader(tmp_path), alpha=0.25)
    first = monitor.sample()
    assert first.temp_c == pytest.approx(50.0)  # the first reading starts the average
    write(tmp_path, temp, "70000")
    second = monitor.sample()
    assert second.temp_c_raw == pytest.approx(70.0)
    assert second.temp_c == pytest.approx(55.0)
    third = monitor.sample()
    assert third.temp_c == pytest.approx(58.75)
    assert monitor.latest() is third


def test_first_cpu_sample_is_primed() -> None:
    monitor = Monitor(MonitorConfig())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    sample = monitor.sample()
    # unprimed, psutil's first call returns 0.0 whatever the process did
    assert sample.proc_cpu_percent_raw > 0
    assert sample.cpu_percent_raw > 0


def test_environment_profiles_from_fake_root(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.1\x00")
    write(tmp_path, "proc/meminfo", "MemTotal:        2047364 kB\nMemFree: 1 kB\n")
    write(tmp_path, "sys/devices/system/cpu/online", "0-3\n")
    env = detect_environment(tmp_path)
    assert (env.board, env.cores, env.ram_mb, env.profile) == (
        "Raspberry Pi 5 Model B Rev 1.1",
        4,
        1999,
        "pi5-2gb",
    )
    write(tmp_path, "proc/meminfo", "MemTotal:        8245360 kB\n")
    assert detect_environment(tmp_path).profile == "pi5"


def test_profile_table() -> None:
    assert profile_for("Raspberry Pi 4 Model B Rev 1.5", 4, 4096) == "pi"
    assert profile_for("AMD EPYC", 2, 24000) == "small"
    assert profile_for("Intel(R) Core(TM) i7", 8, 2048) == "small"
    assert profile_for("Intel(R) Core(TM) i7", 8, 16000) == "desktop"


def test_environment_of_this_machine() -> None:
    env = detect_environment()
    assert env.cores >= 1 and env.ram_mb > 0 and env.board
    assert env.profile in {"pi5-2gb", "pi5", "pi", "small", "desktop"}


@pytest.mark.asyncio
async def test_run_samples_periodically_and_survives_a_failing_consumer() -> None:
    monitor = Monitor(MonitorConfig(interval_s=0.01))
    seen: list[Sample] = []

    def on_sample(sample: Sample) -> None:
        seen.append(sample)
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    task = asyncio.create_task(monitor.run(on_sample))
    try:
        async with asyncio.timeout(30):
            while len(seen) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert seen[0].time < seen[1].time < seen[2].time
    assert monitor.samples >= 3


def test_snapshot_and_health_line(tmp_path: Path) -> None:
    write(tmp_path, "sys/devices/platform/soc/soc:firmware/get_throttled", "0x50004")
    monitor = Monitor(MonitorConfig(), SystemReader(tmp_path))
    assert monitor.snapshot() == {"samples": 0}
    sample = monitor.sample()
    snap = monitor.snapshot()
    json.dumps(snap)
    assert snap["samples"] == 1 and snap["throttled"] == 0x50004
    assert snap["throttled_flags"] == ["throttled", "under_voltage_occurred", "throttled_occurred"]
    fields = health_line_fields(sample, {"underruns": 3, "reconnects": 1})
    assert fields["throttled"] == "0x50004"
    assert fields["throttled_now"] == "throttled"
    assert fields["underruns"] == 3 and fields["reconnects"] == 1
    assert fields["mem_available_mb"] > 0


def test_throttled_found_under_another_firmware_node(tmp_path: Path) -> None:
    write(tmp_path, "sys/devices/platform/axi/axi:firmware/get_throttled", "80008\n")
    assert SystemReader(tmp_path).throttled() == 0x80008


class NoProcReader(SystemReader):
    """What the real reader gives when /proc/stat and /proc/meminfo are hidden (ProcSubset=pid)."""

    def cpu_percent(self) -> float | None:
        return None

    def mem_available_mb(self) -> float | None:
        return None


def test_unreadable_readings_are_named_logged_once_and_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = Monitor(MonitorConfig(), NoProcReader(tmp_path))
    with caplog.at_level("WARNING", logger="voicebox.monitor"):
        first = monitor.sample()
        second = monitor.sample()
    assert first.unreadable == second.unreadable == ("cpu", "mem_available")
    assert second.cpu_percent == 0.0 and second.rss_mb > 0
    warned = [r.getMessage() for r in caplog.records if "monitor.unreadable" in r.getMessage()]
    assert warned == ["monitor.unreadable reading=cpu", "monitor.unreadable reading=mem_available"]
    assert monitor.snapshot()["unreadable"] == ["cpu", "mem_available"]
