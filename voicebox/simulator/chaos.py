"""Chaos: seeded random faults of every kind the simulator knows, spread over a run.

`--chaos SEED[:FAULTS[:MINUTES]]` (default 20 faults in 10 minutes). `schedule` is pure: the same
seed gives the same faults at the same offsets. The run is cut into FAULTS equal slots with one
fault at a random point of each (the first and last WARMUP_S kept quiet), and the kinds are dealt
from reshuffled decks of KINDS, so every kind comes up once per len(KINDS) faults. `run_chaos`
applies them to a running `Simulator`: a session fault hits the newest live connection, an HTTP
refusal the next 1-3 handshakes; each is logged (`sim.chaos`) with its time and connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from websockets.exceptions import ConnectionClosed

from voicebox import logs
from voicebox.simulator.faults import Fault, parse_fault

if TYPE_CHECKING:
    from voicebox.simulator.server import Simulator

log = logging.getLogger("voicebox.simulator")

# Every fault the simulator knows; http refusals apply to the next handshakes.
KINDS = (
    "close:1002",
    "close:1008",
    "close:1011",
    "close:1012",
    "close:1013",
    "close:1000",
    "cap",
    "drop",
    "silent",
    "malformed",
    "interrupt",
    "tool",
    "http:503",
    "http:429",
    "quota",
    "end_call",
    "oversize",
)
DEFAULT_FAULTS = 20
DEFAULT_MINUTES = 10.0
WARMUP_S = 5.0
LIVE_WAIT_S = 15.0  # a session fault waits this long for a live connection, else is skipped


class ChaosError(ValueError):
    """A --chaos spec that does not parse."""


@dataclass(frozen=True)
class ChaosSpec:
    seed: int
    faults: int = DEFAULT_FAULTS
    minutes: float = DEFAULT_MINUTES


@dataclass(frozen=True)
class ChaosEvent:
    at_s: float  # from the start of the run
    kind: str  # one of KINDS
    refusals: int = 0  # http: how many of the next handshakes are refused


def parse_chaos(text: str) -> ChaosSpec:
    parts = text.strip().split(":")
    try:
        if not 1 <= len(parts) <= 3:
            raise ValueError
        seed = int(parts[0])
        faults = int(parts[1]) if len(parts) > 1 else DEFAULT_FAULTS
        minutes = float(parts[2]) if len(parts) > 2 else DEFAULT_MINUTES
    except ValueError:
        raise ChaosError(
            f"--chaos {text!r}: expected SEED[:FAULTS[:MINUTES]], e.g. 7:100:30"
        ) from None
    if faults < 1 or not minutes > 0:
        raise ChaosError(f"--chaos {text!r}: FAULTS must be >= 1 and MINUTES > 0")
    if minutes * 60 <= 2 * WARMUP_S:
        raise ChaosError(f"--chaos {text!r}: MINUTES must leave more than {2 * WARMUP_S:g} s")
    return ChaosSpec(seed, faults, minutes)


def schedule(spec: ChaosSpec, kinds: tuple[str, ...] = KINDS) -> list[ChaosEvent]:
    """The faults of one run, in time order; deterministic for spec (and kinds)."""
    if not kinds:
        raise ChaosError("no fault kinds to choose from")
    for kind in kinds:
        if kind not in KINDS:
            raise ChaosError(f"unknown chaos kind {kind!r} (one of {', '.join(KINDS)})")
    rng = random.Random(spec.seed)
    span = spec.minutes * 60 - 2 * WARMUP_S
    slot = span / spec.faults
    deck: list[str] = []
    events = []
    for i in range(spec.faults):
        if not deck:
            deck = rng.sample(list(kinds), len(kinds))
        kind = deck.pop()
        at = WARMUP_S + slot * i + rng.uniform(0.1, 0.9) * slot
        refusals = rng.randint(1, 3) if kind.startswith("http:") else 0
        events.append(ChaosEvent(round(at, 3), kind, refusals))
    return events


def _live(sim: Simulator) -> int | None:
    """The newest connection with a session that is live and not already half-open."""
    for rec in reversed(sim.connections):
        session = sim._sessions.get(rec.index)
        if rec.live and session is not None and not session.silent and not session.ending:
            return rec.index
    return None


@dataclass(frozen=True)
class Applied:
    n: int
    at_s: float  # when it was applied, from the start
    kind: str
    connection: int | None  # None: skipped (no live connection)
    loop_time: float


async def run_chaos(
    sim: Simulator, events: list[ChaosEvent], applied: list[Applied] | None = None
) -> list[Applied]:
    """Apply events on schedule (from now); what was applied where goes into `applied` as it
    happens (so a run cut short keeps its record) and is returned."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    applied = [] if applied is None else applied
    for n, ev in enumerate(events, 1):
        await asyncio.sleep(max(0.0, t0 + ev.at_s - loop.time()))
        conn: int | None
        if ev.kind.startswith("http:"):
            status = int(ev.kind.split(":")[1])
            first = len(sim.connections) + 1
            now = loop.time()
            for k in range(ev.refusals):
                sim.set_fault(Fault(first + k, "http", status, retry_after_s=1.0))
            conn = first
        else:
            conn = _live(sim)
            if conn is None:
                try:
                    await sim.wait_for(lambda: _live(sim) is not None, LIVE_WAIT_S)
                    conn = _live(sim)
                except TimeoutError:
                    conn = None
            now = loop.time()  # when it hits, not when a close handshake it starts ends
            if conn is not None:
                try:
                    await sim.inject(parse_fault(f"{conn}:{ev.kind}"), conn)
                except (LookupError, ConnectionClosed):
                    conn = None
        applied.append(Applied(n, round(now - t0, 3), ev.kind, conn, now))
        logs.event(
            log,
            "sim.chaos",
            logging.WARNING if conn is not None else logging.INFO,
            n=n,
            of=len(events),
            t_s=round(now - t0, 2),
            fault=ev.kind,
            conn=conn if conn is not None else "none (skipped)",
            refusals=ev.refusals or None,
        )
    logs.event(log, "sim.chaos.done", faults=len(applied))
    return applied
