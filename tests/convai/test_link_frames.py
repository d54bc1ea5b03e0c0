"""SessionLink writes its own masked text frames: a real websockets server must read them back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from voicebox.convai import messages as m
from voicebox.convai.connection import SessionLink
from voicebox.convai.session import Send, Session, SessionSettings
from voicebox.convai.tools import ToolRegistry

from .fakes import RecordingAudio


@pytest.mark.asyncio
async def test_frames_of_every_length_class_arrive_intact_and_in_order() -> None:
    got: list[str | bytes] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for msg in ws:
            got.append(msg)
            if msg == "end":
                done.set()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            session = Session(SessionSettings(), 0.0)
            session.receive(m.Metadata("c1", "pcm_16000", "pcm_16000"), 0.0)
            link = SessionLink(
                ws, session, RecordingAudio(), ToolRegistry(), receive_timeout_s=lambda: 10.0
            )
            # Beyond the window (WINDOW_BYTES unconfirmed) frames wait for the sender and its pongs.
            sender = asyncio.create_task(link._sender())
            chunk = (np.arange(320) * 97).astype(np.int16)
            texts = ["x", "é" * 40, "a" * 125, "b" * 126, "c" * 65535, "d" * 65536, "e" * 200_000]
            link.send_mic(chunk, 16000, True)
            link.act([Send(t) for t in texts])
            for _ in range(5):  # gated: one 100 ms frame of silence
                link.send_mic(chunk, 16000, False)
            link.act([Send("end")])
            await asyncio.wait_for(done.wait(), 10)
            sender.cancel()
    audio = m.user_audio_chunk(chunk.tobytes())
    silence = m.user_audio_chunk(bytes(3200))
    assert got == [audio, *texts, silence, "end"]
