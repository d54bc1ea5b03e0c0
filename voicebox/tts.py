"""Text-to-speech over the ElevenLabs `stream-input` WebSocket, and the `voicebox say` command.

One synthesis = one socket: a single-space first message carrying voice_settings and
generation_config, the phrase in chunks that each end with a space (the last one flushed), then
`{"text": ""}` (end of stream). Audio arrives base64-encoded in the requested `pcm_<rate>` format
until `isFinal` or a 1000 close. An error frame or any other close raises `TtsError`. The API key
travels only in the `xi-api-key` header.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import json
import logging
import re
import sys
import wave
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from voicebox.audio.formats import AudioFormat
from voicebox.command_config import load_for_command
from voicebox.config import Config, Secret, TtsConfig
from voicebox.logs import event

log = logging.getLogger(__name__)
# websockets logs every handshake header (the key among them) at DEBUG: never below INFO here.
_socket_log = logging.getLogger("voicebox.tts.socket")
_socket_log.setLevel(logging.INFO)

MAX_MESSAGE = 16 * 2**20
TTS_PCM_RATES = (8000, 16000, 22050, 24000, 44100)
DEFAULT_PCM_RATE = 24000
GENERATION_CONFIG = {"chunk_length_schedule": [120, 160, 250, 290]}
_SENTENCE_END = re.compile(r"(?<=[.!?;:,])\s+")


class TtsError(Exception):
    """A synthesis that failed: the service's message and code, or what went wrong locally."""

    def __init__(self, message: str, code: int | str | None = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})")
        self.message = message
        self.code = code


def synthesis_format(cfg: Config) -> str:
    """tts.output_format, else the pcm_ rate that fits the configured output device.

    A pure function of the config, so `announcements --prefetch` and the daemon agree on cache keys:
    the device rate if the service offers it, else the largest offered rate that divides it, else
    24 kHz. A file output without a rate runs at 16 kHz.
    """
    if cfg.tts.output_format:
        return cfg.tts.output_format
    out = cfg.audio.output
    rate = out.sample_rate or (16000 if out.backend == "file" else None)
    if rate is None:
        return f"pcm_{DEFAULT_PCM_RATE}"
    if rate in TTS_PCM_RATES:
        return f"pcm_{rate}"
    dividers = [r for r in TTS_PCM_RATES if rate % r == 0]
    return f"pcm_{max(dividers) if dividers else DEFAULT_PCM_RATE}"


def query_params(cfg: TtsConfig, output_format: str) -> dict[str, str]:
    """The stream-input query: model and format always, other settings only when configured."""
    params: dict[str, str] = {"model_id": cfg.model_id, "output_format": output_format}
    optional: dict[str, Any] = {
        "optimize_streaming_latency": cfg.optimize_streaming_latency,
        "inactivity_timeout": cfg.inactivity_timeout,
        "auto_mode": cfg.auto_mode,
        "language_code": cfg.language_code,
        "enable_ssml_parsing": cfg.enable_ssml_parsing,
    }
    for name, value in optional.items():
        if value is None:
            continue
        params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return params


def build_url(api_base: str, cfg: TtsConfig, output_format: str) -> str:
    """`wss://host/v1/text-to-speech/{voice_id}/stream-input?...` from the REST base URL."""
    base = urlsplit(api_base)
    scheme = {"https": "wss", "http": "ws"}.get(base.scheme, base.scheme)
    path = f"{base.path.rstrip('/')}/v1/text-to-speech/{quote(cfg.voice_id, safe='')}/stream-input"
    query = urlencode(query_params(cfg, output_format), quote_via=quote)
    return urlunsplit((scheme, base.netloc, path, query, ""))


def text_chunks(text: str) -> list[str]:
    """The phrase split after sentence and clause punctuation; every chunk ends with one space."""
    words = " ".join(text.split())
    return [part + " " for part in _SENTENCE_END.split(words) if part]


def messages(text: str, cfg: TtsConfig) -> list[dict[str, Any]]:
    """Everything the client sends for one phrase, in order."""
    first: dict[str, Any] = {
        "text": " ",
        "voice_settings": dataclasses.asdict(cfg.voice_settings),
        "generation_config": GENERATION_CONFIG,
    }
    chunks = text_chunks(text)
    body: list[dict[str, Any]] = [{"text": chunk} for chunk in chunks]
    if body:
        body[-1]["flush"] = True
    return [first, *body, {"text": ""}]


async def synthesize(
    text: str, cfg: TtsConfig, api_base: str, api_key: Secret | None, output_format: str
) -> bytes:
    """Synthesise `text`; raw audio in `output_format`. Raises TtsError on any failure."""
    if not text_chunks(text):
        raise TtsError("nothing to say: the phrase is empty")
    url = build_url(api_base, cfg, output_format)
    headers = {"xi-api-key": api_key.reveal()} if api_key else {}
    try:
        async with asyncio.timeout(cfg.timeout_s):
            audio = await _exchange(url, headers, messages(text, cfg))
    except TimeoutError:
        raise TtsError(f"no complete answer within {cfg.timeout_s:g} s") from None
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise TtsError(f"handshake refused with HTTP {status}", status) from None
    except (OSError, WebSocketException) as exc:
        raise TtsError(f"cannot reach {urlsplit(url).netloc}: {exc}") from None
    if output_format.startswith("pcm_") and len(audio) % 2:
        audio = audio[:-1]  # never hand on half a sample
    return audio


class _connect_here(connect):  # noqa: N801 (used like the function it extends)
    """websockets' connect following no redirect: on another origin it would drop only the
    Authorization and Cookie headers, so xi-api-key would go along. A 3xx stays InvalidStatus."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def _exchange(url: str, headers: dict[str, str], outgoing: list[dict[str, Any]]) -> bytes:
    audio = bytearray()
    frames = aligned = 0
    async with _connect_here(
        url,
        additional_headers=headers,
        max_size=MAX_MESSAGE,
        close_timeout=2,
        compression=None,
        logger=_socket_log,
    ) as ws:
        try:
            for outgoing_message in outgoing:
                await ws.send(json.dumps(outgoing_message))
        except ConnectionClosed:
            pass  # the service said why in a frame or the close: read them below
        try:
            async for raw in ws:
                frame = _parse_frame(raw)
                if "message" in frame or "error" in frame:
                    text = str(frame.get("message") or frame.get("error"))
                    raise TtsError(text, frame.get("code") or frame.get("error"))
                frames += 1
                if frame.get("audio"):
                    audio += _decode_audio(frame["audio"])
                aligned += _aligned_chars(frame)
                if frame.get("isFinal"):
                    break
        except ConnectionClosed as exc:
            close = exc.rcvd
            if close is None:
                raise TtsError("connection lost before the end of the audio") from None
            raise TtsError(close.reason or f"closed with code {close.code}", close.code) from None
    if not audio:
        raise TtsError("the service returned no audio")
    event(log, "tts.synthesised", logging.DEBUG, frames=frames, audio_bytes=len(audio),
          aligned_chars=aligned)  # fmt: skip
    return bytes(audio)


def _aligned_chars(frame: dict[str, Any]) -> int:
    """Characters covered by a frame's alignment (normalizedAlignment preferred; may be null)."""
    alignment = frame.get("normalizedAlignment") or frame.get("alignment")
    chars = alignment.get("chars") if isinstance(alignment, dict) else None
    return len(chars) if isinstance(chars, list) else 0


def _parse_frame(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise TtsError("malformed frame from the service (not JSON)") from None
    if not isinstance(frame, dict):
        raise TtsError("malformed frame from the service (not an object)")
    return frame


def _decode_audio(data: Any) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        raise TtsError("malformed audio in a frame (not base64)") from None


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    """16-bit mono WAV at `rate`."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def main_say(args: argparse.Namespace) -> int:
    """`voicebox say TEXT [--out FILE.wav]`: 0 ok, 78 invalid config, 1 synthesis failed."""
    from voicebox import config

    cfg, key = load_for_command(args.config)
    if key is None:
        print(
            f"voicebox say: no API key (systemd credential '{config.CREDENTIAL_NAME}', "
            f"${config.API_KEY_ENV} or agent.api_key_file)",
            file=sys.stderr,
        )
        return 1
    fmt = synthesis_format(cfg)
    try:
        rate = pcm_rate(fmt)
        pcm = asyncio.run(synthesize(args.text, cfg.tts, cfg.agent.api_base, key, fmt))
    except TtsError as exc:
        print(f"voicebox say: synthesis failed: {exc}", file=sys.stderr)
        return 1
    if args.out:
        try:
            write_wav(Path(args.out), pcm, rate)
        except OSError as exc:
            print(f"voicebox say: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 0
    return asyncio.run(_play(cfg, pcm, rate))


def pcm_rate(fmt: str) -> int:
    """The sample rate of a `pcm_<rate>` format; TtsError for anything else."""
    try:
        parsed = AudioFormat.parse(fmt)
    except ValueError as exc:
        raise TtsError(f"tts.output_format: {exc}") from None
    if parsed.encoding != "pcm":
        raise TtsError(f"tts.output_format: expected pcm_<rate>, got {fmt!r}")
    return parsed.rate


async def _play(cfg: Config, pcm: bytes, rate: int) -> int:
    from voicebox.audio.engine import AudioEngine

    engine = AudioEngine(cfg.audio)
    try:
        await engine.start(lambda chunk: None)
    except Exception as exc:  # AudioDeviceError and PortAudio errors name the device
        print(f"voicebox say: cannot open the audio output: {exc}", file=sys.stderr)
        return 1
    try:
        engine.set_output_format(AudioFormat("pcm", rate))
        engine.play(pcm)
        engine.end_reply()
        await engine.drain(timeout=len(pcm) / 2 / rate + 5.0)
    finally:
        await engine.stop()
    return 0
