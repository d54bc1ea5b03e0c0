"""A conversation that rolls over many times keeps nothing of the sessions it has left."""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import pytest

from tests.convai.rig import Rig, rig
from voicebox.simulator.server import SimConfig


def live_objects(r: Rig) -> Counter[str]:
    """Live objects of voicebox's classes, websockets' and asyncio's, by type name, except what
    the simulator keeps of each connection on purpose (its records, for the tests to read)."""
    gc.collect()
    kept = {id(v) for c in r.sim.connections for v in vars(c).values()}
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        if id(obj) in kept:
            continue
        if isinstance(obj, asyncio.TimerHandle) and obj.cancelled():
            # The loop drops cancelled timers from its heap lazily, in batches: not held by us.
            continue
        cls = type(obj)
        module = cls.__dict__.get("__module__")
        if not isinstance(module, str):
            continue
        if module.startswith(("voicebox.convai", "voicebox.audio", "websockets")) or (
            cls in (asyncio.Task, asyncio.Future, asyncio.TimerHandle)
        ):
            counts[f"{module}.{cls.__qualname__}"] += 1
    return counts


async def sessions(r: Rig, n: int) -> None:
    await r.sim.wait_connection(n, timeout=30)
    await r.sim.wait_for(lambda: r.sim.connection(n).user_audio_chunks > 0, timeout=10)


@pytest.mark.asyncio
async def test_rollovers_leave_no_sessions_links_sockets_or_tasks_behind() -> None:
    # The simulator caps every session at 0.4 s, so the supervisor restarts at the cap again and
    # again with the context carried over, as over a long conversation.
    sim = SimConfig(max_duration_s=0.4, first_message="", ping_interval_s=0.1)
    async with rig(sim) as r:
        await sessions(r, 6)
        before = live_objects(r)
        await sessions(r, 18)
        after = live_objects(r)
    assert r.sup.snapshot()["counters"]["duration_caps"] >= 16
    # The simulator's own server-side objects are counted too; both ends must let go. A session
    # open or closing on either side at either moment accounts for a small difference.
    grown = {k: after[k] - before[k] for k in after if after[k] - before[k] > 2}
    assert grown == {}, f"objects that grow with the number of sessions: {grown}"
