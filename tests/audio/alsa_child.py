"""Run in a subprocess with HOME holding an .asoundrc (PortAudio reads ALSA config at import).

Usage: alsa_child.py SCENARIO TMPDIR; prints one JSON line of results.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from voicebox.audio.devices import AudioDeviceError
from voicebox.audio.engine import AudioEngine
from voicebox.config import AudioConfig, InputConfig, OutputConfig

RATE = 16000


def config(**out: object) -> AudioConfig:
    return AudioConfig(
        InputConfig(sample_rate=RATE, queue_ms=120_000),
        OutputConfig(sample_rate=RATE, prebuffer_ms=0, buffer_ms=200_000, **out),  # type: ignore[arg-type]
    )


async def until(cond: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.005)


async def capture_playback(tmp: Path) -> dict[str, object]:
    engine = AudioEngine(config())
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    await until(lambda: len(chunks) * 320 >= 2 * RATE)
    reply = np.load(tmp / "reply.npy")
    engine.play(reply.tobytes())
    drained = await engine.drain(20)
    stats = engine.stats()
    await engine.stop()
    np.save(tmp / "captured.npy", np.concatenate(chunks))
    return {"drained": drained, "underruns": stats.underruns, "errors": stats.device_errors}


async def interrupt(tmp: Path) -> dict[str, object]:
    engine = AudioEngine(config())
    await engine.start(lambda c: None)
    reply = np.load(tmp / "reply.npy")
    engine.play(reply.tobytes())
    engine.end_reply()
    pb = engine._playback
    assert pb is not None
    await until(lambda: pb.ring.consumed > 0)
    engine.interrupt()
    consumed_at_interrupt = pb.ring.consumed
    await asyncio.sleep(0.3)
    playing = engine.playing
    await engine.stop()
    return {"consumed": consumed_at_interrupt, "total": len(reply), "playing": playing}


async def recover(tmp: Path) -> dict[str, object]:
    engine = AudioEngine(config())
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    out = engine._output
    out.stream.abort()  # type: ignore[union-attr]  # the stream dies under us
    await until(lambda: engine.stats().device_errors == 1)
    await until(engine.alive)
    n = len(chunks)
    await until(lambda: len(chunks) > n + 10)
    reply = np.load(tmp / "reply.npy")
    engine.play(reply.tobytes())
    drained = await engine.drain(20)
    stats = engine.stats()
    await engine.stop()
    return {"drained": drained, "errors": stats.device_errors, "alive_after": True}


async def latency(tmp: Path) -> dict[str, object]:
    engine = AudioEngine(config())
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    before = engine._output.stream.latency  # type: ignore[union-attr]
    reply = np.load(tmp / "reply.npy")
    engine.play(reply.tobytes())
    engine.set_latency(0.25)
    assert engine.playing
    await asyncio.sleep(0.3)  # several supervise periods while the reply plays
    during = engine._output.stream.latency  # type: ignore[union-attr]
    drained = await engine.drain(20)
    consumed = engine._playback.ring.consumed  # type: ignore[union-attr]

    def reopened() -> bool:
        out = engine._output.stream  # type: ignore[union-attr]
        return out is not None and abs(out.latency - 0.25) < 0.05

    await until(reopened)
    n = len(chunks)
    await until(lambda: len(chunks) > n + 10)  # capture flows again after the reopen
    after_in = engine._input.stream.latency  # type: ignore[union-attr]
    after_out = engine._output.stream.latency  # type: ignore[union-attr]
    stats = engine.stats()
    await engine.stop()
    return {
        "changed_during_reply": abs(during - before) > 1e-6,
        "consumed_before_reopen": consumed,
        "reply": len(reply),
        "drained": drained,
        "before": round(before, 3),
        "after_in": round(after_in, 3),
        "after_out": round(after_out, 3),
        "errors": stats.device_errors,
    }


async def bad_device(tmp: Path) -> dict[str, object]:
    """A device name not found at start: the engine waits for it, naming it."""
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logging.getLogger("voicebox.audio.engine").addHandler(Keep())
    logging.getLogger("voicebox.audio.engine").setLevel(logging.INFO)
    engine = AudioEngine(AudioConfig(InputConfig(device="no-such-mic")))
    await engine.start(lambda c: None)
    waiting = engine.waiting_for
    await engine.stop()
    return {"error": waiting, "log": [r for r in records if r.startswith("audio.waiting")]}


async def late_device(tmp: Path) -> dict[str, object]:
    """A microphone that appears after start (a USB card late at boot) is opened when it does:
    the retry re-initialises PortAudio, which reads the ALSA configuration again."""
    cfg = AudioConfig(
        InputConfig(device="latemic", sample_rate=RATE), OutputConfig(sample_rate=RATE)
    )
    engine = AudioEngine(cfg)
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    waiting = engine.waiting_for
    with (tmp / ".asoundrc").open("a") as f:  # the card enumerates
        f.write(
            f'pcm.latemic {{ type file  slave.pcm "null"  file "/dev/null"'
            f'  infile "{tmp}/in.raw"  format "raw" }}\n'
        )
    await asyncio.wait_for(engine.opened(), 30)
    await until(lambda: len(chunks) >= 5)
    stats = engine.stats()
    await engine.stop()
    return {"waiting": waiting, "input": stats.input_device, "chunks": len(chunks) >= 5}


async def lookup(tmp: Path) -> dict[str, object]:
    from voicebox.audio import devices

    try:
        devices.find_device(999, "output")
        bad_index = ""
    except AudioDeviceError as exc:
        bad_index = str(exc)
    return {
        "by_name": devices.device_name(devices.find_device("FROMFILE", "input")),
        "by_index": devices.find_device(str(devices.find_device("tofile", "output")), "output"),
        "tofile": devices.find_device("tofile", "output"),
        "default": devices.device_name(devices.find_device(None, "output")),
        "bad_index": bad_index,
    }


async def reference(tmp: Path) -> dict[str, object]:
    """Echo cancellation on the real PortAudio/ALSA path: the reference the playback callback
    records, with PortAudio's time stamps, against what the device got."""
    from voicebox.audio.echo.processor import ProcessingSettings

    engine = AudioEngine(config(), processing=ProcessingSettings(echo_cancellation=True))
    chunks: list[np.ndarray] = []
    await engine.start(chunks.append)
    await until(lambda: len(chunks) * 320 >= RATE // 2)
    reply = np.load(tmp / "reply.npy")
    engine.play(reply.tobytes())
    drained = await engine.drain(20)
    await until(lambda: len(chunks) * 320 >= 3 * RATE)
    capture, playback, processor = engine._capture, engine._playback, engine._processor
    assert capture is not None and playback is not None and processor is not None
    ref = playback.reference
    assert ref is not None
    await engine.stop()  # these PCMs run unpaced: look once both streams have stopped
    mic_stamp, ref_stamp = capture.stamps.stamp(), ref.stamp()
    held = np.zeros(min(ref.total, ref.capacity), dtype=np.int16)
    start = ref.total - len(held)
    ref.read(start, held)
    mic_index = capture.stamps.total - 1
    chosen = processor.reference_start(mic_index)
    stats = processor.snapshot()
    np.save(tmp / "reference.npy", held)
    return {
        "drained": drained,
        "mic_stamp": mic_stamp,
        "ref_stamp": ref_stamp,
        "ref_start": start,
        "ref_total": ref.total,
        "chosen": chosen,
        "frames": stats.frames,
        "resyncs": stats.resyncs,
        "delay_ms": stats.delay_ms,
        "in_latency": engine._input.buffer_s,  # type: ignore[union-attr]
        "out_latency": engine._output.buffer_s,  # type: ignore[union-attr]
    }


SCENARIOS = {
    f.__name__: f
    for f in (
        capture_playback,
        interrupt,
        recover,
        latency,
        bad_device,
        late_device,
        lookup,
        reference,
    )
}

if __name__ == "__main__":
    result = asyncio.run(SCENARIOS[sys.argv[1]](Path(sys.argv[2])))
    print(json.dumps(result))
