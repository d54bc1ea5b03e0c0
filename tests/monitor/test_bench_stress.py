"""The stress bench's scenario still wires the real engine, supervisor, monitor and tuner."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType


def load(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_stress", repo / "bench/bench_stress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_short_run_records_a_time_series_and_plots_it(repo: Path, tmp_path: Path) -> None:
    bench = load(repo)
    result = bench.run_mode("on", 4.0, 0, 1.0, out=tmp_path)
    for key in ("underruns", "dropped_mic", "pong", "rtt", "changes", "turns", "rss_last_mb"):
        assert key in result
    assert result["sessions"] >= 1
    with open(result["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 4 and list(rows[0]) == bench.FIELDS
    assert all(float(r["rss_mb"]) > 0 for r in rows)
    assert any(r["state"] in ("listening", "speaking") for r in rows)
    png = tmp_path / "plot.png"
    bench.plot([("short run", [result, {**result, "mode": "off"}])], None, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
