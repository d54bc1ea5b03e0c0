"""Wire codec cost: voicebox.convai.messages vs the official SDK's way of doing the same work.

Decoding an `audio` event (json.loads + base64 of the payload) and encoding a `user_audio_chunk`
(base64 + JSON text) are the two per-message costs on the audio path: at 20 ms chunks that is
50 messages per second each way. "SDK-equivalent" is what elevenlabs 2.78's conversation.py does
for the same frames: json.loads + dict lookups + base64.b64decode, and
json.dumps({"user_audio_chunk": base64.b64encode(pcm).decode()}).
Usage: .venv/bin/python bench/bench_codec.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebox.convai import messages as m  # noqa: E402
from voicebox.simulator.voice import speech_like  # noqa: E402

RATE = 16000
TARGET_MSGS_PER_S = 50  # 20 ms chunks, one direction, on a Pi 5 (the figure)


def _sdk_decode(frame: str) -> bytes:
    message = json.loads(frame)
    if message["type"] == "audio":
        event = message["audio_event"]
        if int(event["event_id"]) <= 0:
            return b""
        return base64.b64decode(event["audio_base_64"])
    return b""


def _sdk_encode(pcm: bytes) -> str:
    return json.dumps({"user_audio_chunk": base64.b64encode(pcm).decode()})


def _pair(
    ours: Callable[[], object], sdk: Callable[[], object], number: int, rounds: int
) -> tuple[float, float]:
    """µs per call of each, best of `rounds`, measured alternately so load noise hits both."""
    best_ours = best_sdk = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, timeit.timeit(ours, number=number))
        best_sdk = min(best_sdk, timeit.timeit(sdk, number=number))
    return best_ours / number * 1e6, best_sdk / number * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    number, rounds = (2000, 5) if args.quick else (5000, 25)

    rows = []
    for ms in (20, 250):
        pcm = speech_like(ms / 1000, RATE).tobytes()
        frame = m.encode_server(m.Audio(7, pcm, None))
        assert m.decode_server(frame) == m.Audio(7, pcm, None)
        assert _sdk_decode(frame) == pcm
        decode_ours, decode_sdk = partial(m.decode_server, frame), partial(_sdk_decode, frame)
        ours, sdk = _pair(decode_ours, decode_sdk, number, rounds)
        rows.append((f"decode_server audio event ({ms} ms, {len(frame)} B)", ours, sdk))
    pcm = speech_like(0.02, RATE).tobytes()
    assert json.loads(m.user_audio_chunk(pcm)) == json.loads(_sdk_encode(pcm))
    ours, sdk = _pair(partial(m.user_audio_chunk, pcm), partial(_sdk_encode, pcm), number, rounds)
    rows.append(("encode user_audio_chunk (20 ms, 640 B)", ours, sdk))
    sdk_pong = partial(json.dumps, {"type": "pong", "event_id": 12345})
    ours, sdk = _pair(partial(m.pong, 12345), sdk_pong, number, rounds)
    rows.append(("encode pong", ours, sdk))

    print("Wire codec: µs per message, voicebox vs SDK-equivalent (this machine, one core)")
    print()
    columns = ["operation", "voicebox µs", "voicebox msg/s", "SDK-equivalent µs", "SDK / voicebox"]
    print("| " + " | ".join([*columns, "target"]) + " |")
    print("|---|---|---|---|---|---|")
    for name, ours_us, sdk_us in rows:
        print(
            f"| {name} | {ours_us:.2f} | {1e6 / ours_us:,.0f} | {sdk_us:.2f} | "
            f"{sdk_us / ours_us:.2f}x | ≥ {TARGET_MSGS_PER_S} msg/s on a Pi 5 |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
