"""The simulator's text-to-speech endpoint: `/v1/text-to-speech/{voice_id}/stream-input`.

It checks what the service checks (query parameters, the API key, the single-space first
message, voice_settings only in the first message) and answers like the service: error frames
`{message, error, code}` followed by a 1008 close, or synthetic audio (one tone per word at the
requested rate, base64 in `pcm_*`/`ulaw_8000`) with `isFinal` at the end and a 1000 close after
end of stream.

Every connection is recorded as a `TtsRequest` on `sim.tts_requests` when the simulator object
has that list attribute; the key required is `sim.api_key` (None: no key required).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voicebox.audio.formats import AudioFormat, encode

PATH = re.compile(r"^/v1/text-to-speech/([^/]+)/stream-input$")
FORMATS = {
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "ulaw_8000",
}
KNOWN_PARAMS = {
    "model_id",
    "output_format",
    "inactivity_timeout",
    "auto_mode",
    "sync_alignment",
    "enable_ssml_parsing",
    "enable_logging",
    "language_code",
    "apply_text_normalization",
    "seed",
    "authorization",
    "optimize_streaming_latency",  # deprecated, still accepted
}
BOOL_PARAMS = {"auto_mode", "sync_alignment", "enable_ssml_parsing", "enable_logging"}
VOICE_SETTINGS_CHANGED = (
    "voice_settings field must be provided in the first message and then either be not "
    "provided or not change"
)
WORD_S = 0.12
GAP_S = 0.03
FRAME_S = 0.1


@dataclass
class TtsRequest:
    """One stream-input connection as the simulator saw it."""

    path: str
    voice_id: str
    query: dict[str, str]
    key_sent: bool
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    close_code: int | None = None
    error: str | None = None


class _Reject(Exception):
    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


def word_tone(word: str, rate: int) -> npt.NDArray[np.int16]:
    """The synthetic audio of one word: a tone whose pitch depends on the word, then a gap."""
    freq = 300 + zlib.crc32(word.encode()) % 600
    t = np.arange(int(WORD_S * rate)) / rate
    tone = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return np.concatenate([tone, np.zeros(int(GAP_S * rate), dtype=np.int16)])


def _check_query(path: str) -> tuple[str, dict[str, str], AudioFormat]:
    parts = urlsplit(path)
    m = PATH.match(parts.path)
    if not m:
        raise _Reject(f"no such endpoint: {parts.path}", "not_found")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in KNOWN_PARAMS:
            raise _Reject(f"unknown query parameter {name!r}", "invalid_request")
        if name in query:
            raise _Reject(f"query parameter {name!r} given twice", "invalid_request")
        if "?" in value:
            raise _Reject(f"invalid value for {name!r}: {value!r}", "invalid_request")
        if name in BOOL_PARAMS and value not in ("true", "false"):
            raise _Reject(f"{name} must be true or false, got {value!r}", "invalid_request")
        query[name] = value
    if not query.get("model_id"):
        raise _Reject("model_id is required", "invalid_request")
    fmt = query.get("output_format", "mp3_44100_128")
    if fmt not in FORMATS:
        raise _Reject(f"output_format {fmt!r} is not supported here", "invalid_output_format")
    timeout = query.get("inactivity_timeout")
    if timeout is not None and not (timeout.isdigit() and 1 <= int(timeout) <= 180):
        raise _Reject(f"inactivity_timeout must be 1..180, got {timeout!r}", "invalid_request")
    return unquote(m.group(1)), query, AudioFormat.parse(fmt)


async def serve_tts(ws: ServerConnection, sim: Any) -> None:
    """Serve one stream-input connection like the service would."""
    path = ws.request.path if ws.request is not None else ""
    headers = ws.request.headers if ws.request is not None else None
    sent_key = headers.get("xi-api-key") if headers is not None else None
    required = getattr(sim, "api_key", None)
    record = TtsRequest(path=path, voice_id="", query={}, key_sent=sent_key is not None)
    log = getattr(sim, "tts_requests", None)
    if isinstance(log, list):
        log.append(record)
    try:
        record.voice_id, record.query, fmt = _check_query(path)
        timeout = float(record.query.get("inactivity_timeout", "20"))
        await _session(ws, record, fmt, timeout, sent_key, required)
        record.close_code = 1000
        await ws.close(1000)
    except _Reject as exc:
        record.error = exc.message
        record.close_code = 1008
        frame = {"message": exc.message, "error": exc.error, "code": 1008}
        try:
            await ws.send(json.dumps(frame))
            await ws.close(1008, exc.message[:120])
        except ConnectionClosed:
            pass
    except ConnectionClosed:
        record.close_code = None


async def _session(
    ws: ServerConnection,
    record: TtsRequest,
    fmt: AudioFormat,
    timeout: float,
    sent_key: str | None,
    required: str | None,
) -> None:
    buffered = ""
    first: dict[str, Any] | None = None
    while True:
        try:
            async with asyncio.timeout(timeout):
                raw = await ws.recv()
        except TimeoutError:
            raise _Reject(
                f"Have not received new text for {timeout:g} seconds", "input_timeout_exceeded"
            ) from None
        try:
            msg = json.loads(raw)
        except ValueError:
            raise _Reject("message is not JSON", "invalid_message") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("text", ""), str):
            raise _Reject("message must be an object with a text string", "invalid_message")
        record.messages.append(msg)
        if first is None:
            key = sent_key if sent_key is not None else msg.get("xi-api-key")
            if required is not None and key != required:
                raise _Reject("Invalid API key", "invalid_api_key")
            if msg.get("text") != " ":
                raise _Reject("the first message must be a single space", "invalid_message")
            first = msg
            continue
        if "voice_settings" in msg and msg["voice_settings"] != first.get("voice_settings"):
            raise _Reject(VOICE_SETTINGS_CHANGED, "invalid_message")
        text = str(msg.get("text", ""))
        if text == "":
            await _speak(ws, record, buffered, fmt)
            await ws.send(json.dumps({"isFinal": True}))
            return
        buffered += text
        if msg.get("flush"):
            await _speak(ws, record, buffered, fmt)
            buffered = ""


async def _speak(ws: ServerConnection, record: TtsRequest, text: str, fmt: AudioFormat) -> None:
    frame_samples = int(FRAME_S * fmt.rate)
    for word in text.split():
        samples = word_tone(word, fmt.rate)
        for start in range(0, len(samples), frame_samples):
            data = encode(samples[start : start + frame_samples], fmt)
            record.audio_bytes += len(data)
            alignment = {
                "chars": list(word) if start == 0 else [],
                "charStartTimesMs": [0] * len(word) if start == 0 else [],
                "charDurationsMs": [int(WORD_S * 1000 / len(word))] * len(word)
                if start == 0
                else [],
            }
            await ws.send(
                json.dumps(
                    {
                        "audio": base64.b64encode(data).decode(),
                        "isFinal": None,
                        "alignment": alignment,
                        "normalizedAlignment": alignment,
                    }
                )
            )
