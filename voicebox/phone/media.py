"""Twilio Media Streams messages: what Twilio sends decoded to events, what we send encoded.

Twilio sends JSON text frames `connected`, `start`, `media` (base64 mu-law 8 kHz), `mark` (an
echo of ours once the audio before it has played), `dtmf` and `stop`. A bidirectional stream
(`<Connect><Stream>`) takes `media`, `mark` and `clear` back. `parse` never raises: a bad frame
becomes `Malformed` (with the kind of problem) and an unknown event `Unknown`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law: the frame Twilio sends and we send back
SILENCE = 0xFF  # mu-law zero


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str
    encoding: str
    rate: int
    channels: int
    custom: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    payload: bytes
    track: str


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str


@dataclass(frozen=True, slots=True)
class Malformed:
    kind: str  # json, not_object, no_event, fields, base64, binary
    detail: str


@dataclass(frozen=True, slots=True)
class Unknown:
    event: str


StreamEvent = Connected | Start | Media | Mark | Dtmf | Stop | Malformed | Unknown


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise KeyError(key)
    return value


def parse(frame: str | bytes) -> StreamEvent:
    """One frame from Twilio as an event; never raises."""
    if isinstance(frame, bytes):
        return Malformed("binary", f"{len(frame)} byte binary frame")
    try:
        msg = json.loads(frame)
    except ValueError as exc:
        return Malformed("json", str(exc)[:120])
    except RecursionError:
        return Malformed("json", "nested too deeply")
    if not isinstance(msg, dict):
        return Malformed("not_object", type(msg).__name__)
    kind = msg.get("event")
    if not isinstance(kind, str):
        return Malformed("no_event", "no 'event' string")
    try:
        if kind == "media":
            media = msg["media"]
            payload = base64.b64decode(_str(media, "payload"), validate=True)
            return Media(payload, str(media.get("track", "inbound")))
        if kind == "mark":
            return Mark(_str(msg["mark"], "name"))
        if kind == "start":
            start = msg["start"]
            fmt = start.get("mediaFormat") or {}
            custom = start.get("customParameters") or {}
            if not isinstance(fmt, dict) or not isinstance(custom, dict):
                raise KeyError("mediaFormat")
            return Start(
                stream_sid=_str(start, "streamSid"),
                call_sid=_str(start, "callSid"),
                account_sid=str(start.get("accountSid", "")),
                encoding=str(fmt.get("encoding", "audio/x-mulaw")),
                rate=int(fmt.get("sampleRate", 8000)),
                channels=int(fmt.get("channels", 1)),
                custom={str(k): str(v) for k, v in custom.items()},
            )
        if kind == "dtmf":
            return Dtmf(_str(msg["dtmf"], "digit"))
        if kind == "stop":
            stop = msg.get("stop") or {}
            return Stop(str(stop.get("callSid", "")) if isinstance(stop, dict) else "")
        if kind == "connected":
            return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        if isinstance(exc, binascii.Error):
            return Malformed("base64", f"{kind}: bad base64 payload")
        return Malformed("fields", f"{kind}: missing or bad {exc}")
    return Unknown(kind[:64])


def media_frame(stream_sid: str, payload: bytes) -> str:
    """Agent audio for the caller (SIDs are alphanumeric, base64 needs no escaping)."""
    b64 = base64.b64encode(payload).decode("ascii")
    return f'{{"event":"media","streamSid":"{stream_sid}","media":{{"payload":"{b64}"}}}}'


def mark_frame(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_frame(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
