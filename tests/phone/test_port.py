"""The Media Stream port and message codec, without sockets."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from voicebox.audio.formats import AudioFormat, ulaw_encode
from voicebox.phone import media
from voicebox.phone.port import ULAW_8000, MediaStreamPort


class Wire:
    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []

    def __call__(self, frame: str, t0: float | None) -> None:
        self.frames.append(json.loads(frame))

    def kinds(self) -> list[str]:
        return [str(f["event"]) for f in self.frames]

    def payloads(self) -> list[bytes]:
        out = []
        for f in self.frames:
            if f["event"] == "media":
                m = f["media"]
                assert isinstance(m, dict)
                out.append(base64.b64decode(m["payload"]))
        return out

    def marks(self) -> list[str]:
        names = []
        for f in self.frames:
            if f["event"] == "mark":
                m = f["mark"]
                assert isinstance(m, dict)
                names.append(str(m["name"]))
        return names


def test_ulaw_agent_audio_passes_through_in_20ms_frames_with_a_mark() -> None:
    wire = Wire()
    port = MediaStreamPort("MZ1", wire)
    port.set_output_format(ULAW_8000)
    data = bytes(range(256)) * 2  # 512 bytes: three whole frames and 32 bytes left
    port.play(data)
    assert wire.kinds() == ["media", "media", "media", "mark"]
    assert b"".join(wire.payloads()) == data[:480]
    assert port.playing
    port.end_reply()  # the rest goes out padded with mu-law silence, then its own mark
    tail = wire.payloads()[-1]
    assert tail[:32] == data[480:] and tail[32:] == b"\xff" * 128
    assert all(len(p) == media.FRAME_BYTES for p in wire.payloads())
    assert len(wire.marks()) == 2
    port.on_mark(wire.marks()[0])
    assert port.playing  # the second mark is still outstanding
    port.on_mark(wire.marks()[1])
    assert not port.playing and port.heard_s == pytest.approx(4 * 0.02)


def test_pcm_16000_agent_audio_is_resampled_and_encoded() -> None:
    wire = Wire()
    port = MediaStreamPort("MZ1", wire)
    port.set_output_format(AudioFormat("pcm", 16000))
    t = np.arange(16000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    port.play(tone.tobytes())
    port.end_reply()
    sent = b"".join(wire.payloads())
    assert abs(len(sent) - 8000) <= 2 * media.FRAME_BYTES  # one second at 8 kHz
    assert all(len(p) == media.FRAME_BYTES for p in wire.payloads())


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 44100])
def test_each_reply_chunk_goes_out_at_once_and_end_reply_loses_nothing(rate: int) -> None:
    # Issue 20, defect 5: soxr HQ held ~100 ms blocks, so a reply's first audio waited for the
    # next chunk and its last ~40 ms for end_reply (a silence before the last word).
    wire = Wire()
    port = MediaStreamPort("MZ1", wire)
    port.set_output_format(AudioFormat("pcm", rate))
    n = rate // 10  # 100 ms
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(3 * n) / rate)).astype("<i2")
    for i in range(3):
        port.play(tone[i * n : (i + 1) * n].tobytes())
        sent = len(b"".join(wire.payloads()))
        # All but the partial frame (the filter holds ~2.3 ms): 80 ms of the first 100 ms.
        assert sent >= (i + 1) * 800 - media.FRAME_BYTES, f"after chunk {i + 1}: {sent} bytes"
        assert port.sent_s == pytest.approx(sent / 8000) and wire.kinds()[-1] == "mark"
    port.play(tone[: 3 * n // 10].tobytes())  # and 30 ms more
    port.end_reply()
    assert len(b"".join(wire.payloads())) == 17 * media.FRAME_BYTES  # 330 ms up to 340 ms
    assert all(len(p) == media.FRAME_BYTES for p in wire.payloads())


def test_interrupt_sends_clear_and_later_marks_of_cleared_audio_are_ignored() -> None:
    wire = Wire()
    port = MediaStreamPort("MZ1", wire)
    port.set_output_format(ULAW_8000)
    port.interrupt()
    assert "clear" not in wire.kinds(), "nothing outstanding: no clear"
    port.play(b"\x00" * 800)
    old = wire.marks()[-1]
    port.interrupt()
    assert wire.kinds()[-1] == "clear" and not port.playing
    port.on_mark(old)  # Twilio answers the cleared mark: not ours any more
    assert port.heard_s == 0 and not port.playing


@pytest.mark.asyncio
async def test_drain_waits_for_the_mark_after_the_last_audio() -> None:
    wire = Wire()
    port = MediaStreamPort("MZ1", wire)
    port.set_output_format(ULAW_8000)
    port.play(b"\x00" * 250)
    drained = asyncio.create_task(port.drain(5.0))
    await asyncio.sleep(0.05)
    assert not drained.done()
    port.on_mark(wire.marks()[-1])
    assert await drained is True
    assert await port.drain(0.01) is True  # nothing outstanding
    port.play(b"\x00" * 160)
    assert await port.drain(0.05) is False  # no mark came back


@pytest.mark.asyncio
async def test_caller_audio_follows_the_session_input_rate() -> None:
    port = MediaStreamPort("MZ1", Wire())
    chunks: list[np.ndarray] = []
    await port.start(chunks.append)
    frame = ulaw_encode(np.full(160, 1000, dtype=np.int16))
    port.feed(frame, 0.0)
    assert len(chunks[-1]) == 160 and port.input_format.rate == 8000
    port.set_input_format(AudioFormat("pcm", 16000))
    for _ in range(25):
        port.feed(frame, 0.0)
    assert port.input_format == AudioFormat("pcm", 16000)
    # Twice the samples, every frame's at once (less the ~2.3 ms filter delay on the first).
    assert 280 <= len(chunks[1]) < 320
    assert [len(c) for c in chunks[2:]] == [320] * 24


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("{bad", media.Malformed),
        (b"\x00", media.Malformed),
        ('{"event": "media", "media": {"payload": "!!"}}', media.Malformed),
        ('{"event": "mark", "mark": {}}', media.Malformed),
        ('{"event": "start", "start": {"callSid": "CA1"}}', media.Malformed),
        ('{"event": "new_thing"}', media.Unknown),
        ('{"event": "dtmf", "dtmf": {"digit": "5", "track": "inbound_track"}}', media.Dtmf),
        ('{"event": "stop", "stop": {"callSid": "CA1"}}', media.Stop),
    ],
)
def test_parse_never_raises(frame: str | bytes, expected: type) -> None:
    assert isinstance(media.parse(frame), expected)


def test_parse_start_reads_the_custom_parameters_and_format() -> None:
    msg = {
        "event": "start",
        "start": {
            "streamSid": "MZ9",
            "callSid": "CA9",
            "accountSid": "AC9",
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": "abc"},
        },
    }
    start = media.parse(json.dumps(msg))
    assert start == media.Start("MZ9", "CA9", "AC9", "audio/x-mulaw", 8000, 1, {"token": "abc"})
