"""A 60 s chaos run with 10 faults against a real `voicebox run`: it survives and resumes."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BREAKS = ("close:", "cap", "drop", "silent", "quota", "oversize", "end_call")


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_chaos", REPO / "bench/bench_chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_chaos"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_minute_of_chaos_leaves_the_daemon_running_and_sessions_resuming() -> None:
    bench = load()
    run = asyncio.run(bench.run(2026, 10, 1.0, "always_on", bench.chaos.KINDS))
    analysis = bench.analyse(run)
    assert not run.died_early and run.rc == 0, "\n".join(run.log_lines[-40:])
    assert not [line for line in run.log_lines if "Traceback" in line]
    assert len(run.applied) == 10
    sim = run.sim
    # every fault that ended a session was followed by a later session that got user audio
    # (those in the last seconds may not have had their turn yet)
    for ap in run.applied:
        if ap.connection is None or not ap.kind.startswith(BREAKS):
            continue
        if ap.loop_time - run.t0 > run.t_end - 10:
            continue
        later = [c for c in sim.connections if c.index > ap.connection and c.first_audio_at]
        assert later, f"no session after {ap.kind} on connection {ap.connection}"
    assert analysis.sessions >= 2
    assert analysis.twice == 0  # no audio reached one session twice
    assert analysis.delivered > 0
