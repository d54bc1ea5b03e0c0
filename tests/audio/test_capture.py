"""Capture hand-off: device-thread blocks reach the loop as fixed chunks at the session rate."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from voicebox.audio.capture import STEP_MS, Capture


def ramp(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_blocks_are_rechunked_in_order() -> None:
    chunks: list[np.ndarray] = []
    cap = Capture(asyncio.get_running_loop(), chunks.append, 16000, 16000, 20, 1000)
    for i in range(10):  # 1000 samples in odd-sized device blocks
        cap.on_block(ramp(i * 100, 100))
        await settle()
    assert [len(c) for c in chunks] == [320, 320, 320]
    assert np.array_equal(np.concatenate(chunks), ramp(0, 960))
    assert cap.captured_chunks == 3 and cap.callbacks == 10
    cap.set_chunk_ms(10)
    cap.on_block(ramp(1000, 280))
    await settle()
    assert [len(c) for c in chunks[3:]] == [160, 160]
    assert np.array_equal(np.concatenate(chunks), ramp(0, 1280))


@pytest.mark.asyncio
async def test_full_queue_drops_oldest_and_counts() -> None:
    chunks: list[np.ndarray] = []
    cap = Capture(asyncio.get_running_loop(), chunks.append, 16000, 16000, 20, 100)  # 1600
    for i in range(10):  # 3200 samples while the loop is busy: the oldest 1600 must go
        cap.on_block(ramp(i * 320, 320), overflow=(i == 3))
    await settle()
    assert cap.ring.dropped == 1600
    assert cap.dropped_chunks == 5
    assert np.array_equal(np.concatenate(chunks), ramp(1600, 1600))
    assert cap.input_overflows == 1


@pytest.mark.asyncio
async def test_48k_device_tone_keeps_its_frequency_at_16k() -> None:
    chunks: list[np.ndarray] = []
    cap = Capture(asyncio.get_running_loop(), chunks.append, 48000, 16000, 20, 1000)
    t = np.arange(48000 * 2) / 48000
    x = (np.sin(2 * np.pi * 1000 * t) * 10000).astype(np.int16)
    for i in range(0, len(x), 441):  # a block size that is not a multiple of the chunk
        cap.on_block(x[i : i + 441])
        await settle()
    y = np.concatenate(chunks)
    assert all(len(c) == 320 for c in chunks)
    assert abs(len(y) - 32000) <= 320  # the resampler holds back only its filter delay
    seg = y[4000:20000].astype(np.float64)  # one second, away from the start-up transient
    peak = int(np.argmax(np.abs(np.fft.rfft(seg))))
    assert abs(peak - 1000) <= 1  # 1 Hz bins


@pytest.mark.asyncio
async def test_handoff_from_a_device_thread() -> None:
    chunks: list[np.ndarray] = []
    got = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_chunk(c: np.ndarray) -> None:
        chunks.append(c)
        if len(chunks) == 50:
            got.set()

    cap = Capture(loop, on_chunk, 16000, 16000, 20, 5000)

    def device() -> None:
        for i in range(50):
            cap.on_block(ramp(i * 320, 320))

    th = threading.Thread(target=device)
    th.start()
    await asyncio.wait_for(got.wait(), 10)
    th.join()
    assert np.array_equal(np.concatenate(chunks), ramp(0, 16000))
    assert cap.last_handoff_ms >= 0 and cap.handoff_lag_ms >= 0


@pytest.mark.asyncio
async def test_a_failing_consumer_does_not_stop_capture() -> None:
    seen: list[int] = []

    def on_chunk(c: np.ndarray) -> None:
        seen.append(len(c))
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    cap = Capture(asyncio.get_running_loop(), on_chunk, 16000, 16000, 20, 1000)
    cap.on_block(ramp(0, 640))
    await settle()
    cap.on_block(ramp(640, 320))
    await settle()
    assert seen == [320, 320, 320]


@pytest.mark.asyncio
async def test_a_backlog_is_worked_off_in_steps_that_let_the_loop_run() -> None:
    """A second of audio waiting (the loop was busy) is not handled in one callback: anything
    else due on the loop (a status client, the WebSocket) runs between the steps."""
    loop = asyncio.get_running_loop()
    chunks: list[np.ndarray] = []
    cap = Capture(loop, chunks.append, 16000, 16000, 20, 1000)
    cap.on_block(ramp(0, 16000))
    others: list[int] = []
    loop.call_soon(lambda: others.append(len(chunks)))
    for _ in range(40):
        await asyncio.sleep(0)
    assert others and others[0] * 320 <= STEP_MS * 16  # the other callback ran after one step
    assert np.array_equal(np.concatenate(chunks), ramp(0, 16000))  # and nothing was lost


def test_block_after_the_loop_closed_does_not_raise() -> None:
    loop = asyncio.new_event_loop()
    cap = Capture(loop, lambda c: None, 16000, 16000, 20, 1000)
    loop.close()
    cap.on_block(ramp(0, 320))
    cap.on_block(ramp(0, 320))
    assert cap.callbacks == 2
