"""Rollover to the next session near the duration cap, against the simulator: the edge cases."""

from __future__ import annotations

import asyncio

import pytest

from tests.convai.rig import rig
from voicebox.simulator.faults import parse_fault
from voicebox.simulator.server import SimConfig
from voicebox.state import State

QUIET = {"first_message": "", "ping_interval_s": 0.3}
# A rollover starts one second into the first session (cap 30 s, margin 29 s).
ROLLOVER = {
    "conversation__rollover": True,
    "conversation__max_duration_s": 30,
    "conversation__rollover_margin_s": 29.0,
}


@pytest.mark.asyncio
async def test_end_conversation_while_the_successor_opens_closes_both_sessions() -> None:
    # The successor's metadata comes 1 s late; "end" is pressed as it arrives, so it is read
    # before the old session's close completes.
    sim = SimConfig(faults=(parse_fault("2:delay:1.0"),), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, **ROLLOVER) as r:
        first = await r.sim.wait_connection(1)
        await r.sim.wait_for(lambda: len(r.sim.connections) >= 2, timeout=10)
        second = r.sim.connection(2)
        await r.sim.wait_for(lambda: second.metadata_sent)
        r.sup.end_conversation()
        await r.sim.wait_for(lambda: first.closed and second.closed, timeout=10)
        assert second.closed_by == "client"
        await r.wait_state(State.IDLE)
        await asyncio.sleep(1.0)
        assert r.sup.state is State.IDLE
        assert not any(c.live for c in r.sim.connections)
        assert r.sup.snapshot()["conversation_id"] is None


def pending_session_tasks() -> list[str]:
    """Tasks of the supervisor's sessions still running (a rollover, a session's I/O loop)."""
    names = []
    for task in asyncio.all_tasks():
        name = getattr(task.get_coro(), "__qualname__", "")
        if not task.done() and name in ("Supervisor._rollover", "SessionLink.run"):
            names.append(name)
    return names


@pytest.mark.asyncio
async def test_stop_while_the_successor_opens_leaves_nothing_running() -> None:
    sim = SimConfig(faults=(parse_fault("2:delay:3.0"),), **QUIET)  # type: ignore[arg-type]
    async with rig(sim, **ROLLOVER) as r:
        await r.sim.wait_for(lambda: len(r.sim.connections) >= 2, timeout=10)
        await r.wait(lambda: r.logs.events("session.opened"))
        await r.sup.stop()
        async with asyncio.timeout(10):
            await r.runner  # type: ignore[attr-defined]
        # run() has returned: whatever it started has ended with it.
        assert pending_session_tasks() == []
