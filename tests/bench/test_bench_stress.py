"""bench_stress.py still wires the real engine, supervisor, monitor and tuner, and still drives
the SDK's AsyncConversation against the simulator."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def load(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_stress", repo / "bench/bench_stress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def half_open_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, dict[str, Any]]:
    """One 12 s run with a half-open fault, shared: its time series and plot are recorded as any
    run's are, and the fault is found in the same run (one scenario subprocess, not two)."""
    bench = load(Path(__file__).resolve().parents[2])
    out = tmp_path_factory.mktemp("stress")
    return bench, bench.run_mode("on", 12.0, 0, 1.0, out=out, silent=1)


def test_one_short_run_records_a_time_series_and_plots_it(
    half_open_run: tuple[ModuleType, dict[str, Any]], tmp_path: Path
) -> None:
    bench, result = half_open_run
    for key in ("underruns", "dropped_mic", "pong", "rtt", "changes", "turns", "rss_last_mb"):
        assert key in result
    assert result["sessions"] >= 1
    with open(result["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 4 and list(rows[0]) == bench.FIELDS
    assert all(float(r["rss_mb"]) > 0 for r in rows)
    assert any(r["state"] in ("listening", "speaking") for r in rows)
    assert result["rss_first_mb"] <= result["rss_max_mb"] and len(result["py_blocks"]) == 3
    rss = [line for line in bench.rss_table(result, 12 / 60) if line.startswith("|")]
    assert len(rss) == 5 and all(line.count("|") == 5 for line in rss)
    png = tmp_path / "plot.png"
    bench.plot([("short run", [result, {**result, "mode": "off"}])], None, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sdk_run_sends_mic_blocks_and_gets_pongs(repo: Path, tmp_path: Path) -> None:
    bench = load(repo)
    result = bench.run_mode("sdk", 4.0, 0, 1.0, out=tmp_path)
    assert result["mode"] == "sdk"
    assert result["mic_blocks"] >= 4  # 250 ms blocks over 4 s
    assert result["mic_lag"]["n"] == result["mic_blocks"]
    assert result["rtt"]["n"] >= 1  # the simulator saw the SDK answer its pings
    assert result["ended_early"] is False
    with open(result["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 4 and list(rows[0]) == bench.FIELDS
    table = bench.table(result, result, targets=True, sdk=result)
    assert "SDK AsyncConversation" in table[0]
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_a_half_open_link_is_found_and_reported(
    half_open_run: tuple[ModuleType, dict[str, Any]],
) -> None:
    bench, result = half_open_run
    assert len(result["half_open"]) == 1  # the simulator's one silent fault, found by a probe
    assert result["sessions"] >= 2  # and the conversation went on in a new session
    rows = [line for line in bench.halfopen_table(result, "no load") if line.startswith("|")]
    assert len(rows) == 5 and all(line.count("|") == 5 for line in rows)
