"""A slow uplink and the replay: pongs confirm only what was written, the replay is paced, no
session is taken for half-open because the link is busy, and audio is replayed at most once."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from websockets.asyncio.client import connect

from tests.convai.fakes import RecordingAudio
from tests.convai.rig import rig
from voicebox.convai.connection import SessionLink, conversation_url
from voicebox.convai.session import Session, SessionSettings
from voicebox.convai.tools import ToolRegistry
from voicebox.simulator import bursts
from voicebox.simulator.server import SimConfig, Simulator
from voicebox.simulator.uplink import SlowUplink
from voicebox.simulator.voice import speech_like

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

RATE = 60_000  # bytes/s: a 16 kHz mic needs ~44 kB/s of JSON and base64


def _positions(log: bursts.BurstLog, conn: int | None = None) -> set[tuple[int, int]]:
    return {
        (k, p)
        for _, c, k, lo, hi, _ in log.arrivals
        if conn is None or c == conn
        for p in range(lo, hi + 1)
    }


def _twice_in_one_session(log: bursts.BurstLog) -> set[tuple[int, int, int]]:
    seen: set[tuple[int, int, int]] = set()
    twice = set()
    for _, c, k, lo, hi, _ in log.arrivals:
        for p in range(lo, hi + 1):
            (twice if (c, k, p) in seen else seen).add((c, k, p))
    return twice


def _everything(numbered: dict[int, np.ndarray]) -> set[tuple[int, int]]:
    return {(k, p) for k, b in numbered.items() for p in range(bursts.positions(len(b)))}


async def test_a_pong_confirms_only_the_frames_written_before_its_ping() -> None:
    """A burst handed to a link on a slow uplink: at no time does the link count as heard
    (confirmed) more frames than the service has read."""
    sim = Simulator(SimConfig(first_message="", ping_interval_s=30.0))
    await sim.start()
    up = SlowUplink("127.0.0.1", sim.port, RATE)
    await up.start()
    # A small send buffer, as on a link whose kernel buffers are full: frames wait in the link.
    sock = socket.create_connection(("127.0.0.1", up.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    try:
        url = conversation_url(up.url, "agent_test")
        async with connect(url, sock=sock, compression=None) as ws:
            link = SessionLink(
                ws,
                Session(SessionSettings(), 0.0),
                RecordingAudio(),
                ToolRegistry(),
                receive_timeout_s=lambda: 30.0,
                probe_timing=lambda: (0.2, 20.0),
                replay_s=10.0,
            )
            runner = asyncio.create_task(link.run())
            await asyncio.wait_for(link.ready.wait(), 10)
            conn = sim.connection(1)
            chunk = (speech_like(0.02, 16000, level=0.5)).astype(np.int16)
            link.reserve(250)
            for seq in range(250):  # 5 s of mic at once, as a replay sends it
                link.send_mic(chunk, 16000, True, None, seq)
            worst = 0
            async with asyncio.timeout(30):
                while conn.user_audio_chunks < 250:
                    # The service's reader may hold a few frames the handler has not counted.
                    worst = max(worst, link.unconfirmed.confirmed - conn.user_audio_chunks)
                    await asyncio.sleep(0.005)
            assert worst <= 20, f"{worst} frames confirmed before the service read them"
            assert link.probes >= 3
            await link.close()
            await runner
    finally:
        await up.stop()
        await sim.stop()


async def test_a_replay_after_an_outage_on_a_slow_uplink_is_paced_and_needs_one_session() -> None:
    sim = SimConfig(first_message="", ping_interval_s=0.5, count_bursts=True, interruptions=False)
    up = SlowUplink("127.0.0.1", 0, RATE)
    async with rig(sim, uplink=up, conversation__resume_buffer_s=6.0) as r:
        await r.sim.wait_connection(1)
        log = r.sim.bursts
        assert log is not None
        numbered = {
            k: bursts.encode_burst(k, speech_like(2.0, 16000, level=0.6)) for k in (1, 2, 3)
        }
        r._speech.extend(numbered.values())
        await r.sim.wait_for(lambda: len(_positions(log)) >= 20)
        up.down(3.5)  # an outage while the user talks: ~5 s of speech (~200 kB) to replay
        everything = _everything(numbered)
        await r.sim.wait_for(lambda: _positions(log) >= everything, timeout=60)
        await asyncio.sleep(3.0)  # and the link stays up after the catch-up
        assert r.logs.events("link.half_open") == [], "a busy link taken for a dead one"
        sessions = {c for _, c, *_ in log.arrivals}
        assert len(r.sim.connections) == 2 and sessions == {1, 2}
        assert r.sup.snapshot()["counters"]["out_dropped"] == 0
        assert not _twice_in_one_session(log)
        [replay] = r.logs.events("mic.replayed")
        assert float(replay["REPLAYED_S"]) + float(replay["BUFFERED_S"]) > 3.0


async def test_audio_is_replayed_into_one_session_at_most() -> None:
    """The link that received the replay fails too: what it was sent as a replay does not go to
    a third session (a link that keeps failing cannot loop the same speech)."""
    sim = SimConfig(first_message="", ping_interval_s=0.5, count_bursts=True, interruptions=False)
    up = SlowUplink("127.0.0.1", 0, RATE)
    async with rig(sim, uplink=up, conversation__resume_buffer_s=6.0) as r:
        await r.sim.wait_connection(1)
        log = r.sim.bursts
        assert log is not None
        r._speech.append(bursts.encode_burst(3, speech_like(2.0, 16000, level=0.6)))
        await r.sim.wait_for(lambda: len(_positions(log)) >= 10)
        up.down(1.5)
        second = await r.sim.wait_connection(2, timeout=15)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 3)
        up.down(0.5)  # the replay is still going out
        await r.sim.wait_connection(3, timeout=15)
        await asyncio.sleep(2.0)
        thrice = _positions(log, 1) & _positions(log, 2) & _positions(log, 3)
        assert not thrice, f"{len(thrice)} positions reached three sessions"
        replays = r.logs.events("mic.replayed")
        assert len(replays) == 2 and float(replays[1].get("REPEATED_S") or 0) > 0


async def test_words_said_as_the_service_closes_cleanly_go_to_the_next_session() -> None:
    """The service closes (1000) while the user holds the button and talks: what it never
    confirmed is replayed into a new session, and the conversation goes on."""
    sim = SimConfig(first_message="", ping_interval_s=30.0, count_bursts=True)
    async with rig(sim, conversation__mode="push_to_talk") as r:
        r.sup.press()
        await r.sim.wait_connection(1)
        log = r.sim.bursts
        assert log is not None
        burst = bursts.encode_burst(5, speech_like(1.2, 16000, level=0.6))
        r._speech.append(burst)
        await r.sim.wait_for(lambda: len(_positions(log)) >= 20)
        await r.sim.inject("1:close:1000", 1)
        await r.sim.wait_connection(2, timeout=15)
        everything = _everything({5: burst})
        await r.sim.wait_for(lambda: _positions(log) >= everything, timeout=10)
        assert r.logs.events("session.closed_while_talking")
        [replay] = r.logs.events("mic.replayed")
        assert float(replay["REPLAYED_S"]) > 0


async def test_a_conversation_the_user_ends_replays_nothing() -> None:
    sim = SimConfig(first_message="", ping_interval_s=30.0, count_bursts=True)
    async with rig(sim, conversation__mode="push_to_talk") as r:
        r.sup.press()
        await r.sim.wait_connection(1)
        log = r.sim.bursts
        assert log is not None
        r._speech.append(bursts.encode_burst(6, speech_like(1.2, 16000, level=0.6)))
        await r.sim.wait_for(lambda: len(_positions(log)) >= 20)
        r.sup.end_conversation()
        await r.sim.wait_for(lambda: r.sim.connection(1).closed)
        await asyncio.sleep(1.5)  # the rest of the burst is said to no one
        r.sup.press()  # a new conversation: nothing of the old one in it
        second = await r.sim.wait_connection(2, timeout=15)
        await r.sim.wait_for(lambda: second.user_audio_chunks >= 20)
        assert _positions(log, 2) == set()
        assert r.logs.events("mic.replayed") == []


async def test_frames_dropped_from_a_full_send_queue_are_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = Simulator(SimConfig(first_message="", ping_interval_s=30.0))
    await sim.start()
    up = SlowUplink("127.0.0.1", sim.port, 20_000)  # slower than the mic needs
    await up.start()
    try:
        async with connect(conversation_url(up.url, "agent_test"), compression=None) as ws:
            link = SessionLink(
                ws,
                Session(SessionSettings(), 0.0),
                RecordingAudio(),
                ToolRegistry(),
                receive_timeout_s=lambda: 30.0,
                probe_timing=lambda: (0.5, 20.0),
            )
            runner = asyncio.create_task(link.run())
            await asyncio.wait_for(link.ready.wait(), 10)
            chunk = speech_like(0.02, 16000, level=0.5).astype(np.int16)
            with caplog.at_level("WARNING", logger="voicebox.convai"):
                for seq in range(600):  # 12 s of mic at once: more than the queue holds
                    link.send_mic(chunk, 16000, True, None, seq)
                await link.close()
                await runner
    finally:
        await up.stop()
        await sim.stop()
    assert link.out_dropped > 0
    dropped = [r for r in caplog.records if getattr(r, "EVENT", None) == "mic.dropped"]
    ended = [r for r in caplog.records if getattr(r, "EVENT", None) == "mic.dropped_end"]
    assert len(dropped) == 1 and len(ended) == 1
    assert getattr(ended[0], "OUT_DROPPED", None) == link.out_dropped
