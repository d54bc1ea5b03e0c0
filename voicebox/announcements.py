"""Spoken announcements of daemon events, from a PCM phrase cache, live TTS, or a tone.

Where the audio comes from, in order: the phrase cache in `<state_dir>/tts/` (works offline),
then a live synthesis (stored in the cache), then a generated tone (two short high beeps; three
low ones for `degraded`), so something is always heard even with the network gone. After a failed
synthesis the network is not tried again for OFFLINE_HOLD_S, so later announcements are immediate.

Playback rule: announcements go through the conversation's playback ring and never overlap the
agent. With `announcements.rule: wait` an announcement waits until the ring has played out (up to
WAIT_LIMIT_S; then it is dropped, never spoken over the agent); with `interrupt` it cuts the agent
and plays at once: through `cut_agent` (the supervisor's barge-in: the session drops the rest of
the agent's turn and tells the service), else `AudioPort.interrupt()`. The phrase is synthesised
as PCM at `tts.synthesis_format(cfg)` and played in the session's current output format: when the
port exposes `output_format`, the PCM is converted to it (resample.convert + μ-law encoding if
needed) and the port's format is never touched; otherwise the port is switched to the phrase's PCM
format for the one `play()` + `end_reply()` and set back to pcm_16000 (the agents' default format)
right after, before any other coroutine can run.

Cache files: a header (magic, rate, byte length, CRC-32) then the PCM; written atomically
(temp file + rename). A file whose header, length or checksum does not match is re-synthesised.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebox.audio.formats import PCM_16000, AudioFormat, encode
from voicebox.audio.port import AudioPort
from voicebox.command_config import load_for_command
from voicebox.config import EX_CONFIG, Config, Secret
from voicebox.logs import event, register_secret
from voicebox.tts import TtsError, pcm_rate, synthesis_format, synthesize

log = logging.getLogger(__name__)

EVENTS = ("ready", "reconnecting", "degraded", "back_online", "rollover", "daily_limit")
MAGIC = b"VBTTS01\n"
HEADER = struct.Struct("<8sIQI")  # magic, sample rate, PCM byte length, CRC-32 of the PCM
WAIT_LIMIT_S = 60.0
WAIT_POLL_S = 0.05
OFFLINE_HOLD_S = 60.0
DRAIN_MARGIN_S = 5.0


# --- cache -----------------------------------------------------------------------------------


def cache_key(cfg: Config, text: str, output_format: str) -> str:
    """A hash of everything that changes the audio of a phrase."""
    tts = cfg.tts
    material = {
        "text": text,
        "voice_id": tts.voice_id,
        "model_id": tts.model_id,
        "voice_settings": dataclasses.asdict(tts.voice_settings),
        "output_format": output_format,
        "language_code": tts.language_code,
        "enable_ssml_parsing": tts.enable_ssml_parsing,
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


class PhraseCache:
    """PCM phrases on disk, verified on every read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.pcm"

    def load(self, key: str, rate: int) -> bytes | None:
        """The cached PCM, or None if absent, corrupt, truncated or at another rate."""
        try:
            blob = self.path(key).read_bytes()
        except OSError:
            return None
        if len(blob) < HEADER.size:
            return None
        magic, file_rate, length, crc = HEADER.unpack_from(blob)
        pcm = blob[HEADER.size :]
        if magic != MAGIC or file_rate != rate or length != len(pcm) or zlib.crc32(pcm) != crc:
            return None
        return pcm

    def store(self, key: str, rate: int, pcm: bytes) -> None:
        """Write atomically: a reader sees the old file or the complete new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        header = HEADER.pack(MAGIC, rate, len(pcm), zlib.crc32(pcm))
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pcm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header + pcm)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def cache_dir(cfg: Config) -> Path:
    return Path(cfg.paths.state_dir) / "tts"


# --- tone ------------------------------------------------------------------------------------


def tone(event_name: str, rate: int) -> bytes:
    """The fallback: two short 880 Hz beeps, or three 440 Hz beeps for `degraded` (int16 PCM)."""
    freq, count = (440.0, 3) if event_name == "degraded" else (880.0, 2)
    n = int(0.12 * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * rate))
    beep = (9000 * np.sin(2 * np.pi * freq * t) * ramp).astype(np.int16)
    gap = np.zeros(int(0.08 * rate), dtype=np.int16)
    parts: list[npt.NDArray[np.int16]] = []
    for _ in range(count):
        parts += [beep, gap]
    return np.concatenate(parts).astype("<i2").tobytes()


# wake, rising: heard you, go on; mute, falling: the box stops listening; unmute: rising, lower;
# volume: one steady note, at the new level
CHIMES = {
    "wake": (660.0, 990.0),
    "mute": (880.0, 440.0),
    "unmute": (440.0, 660.0),
    "volume": (784.0, 784.0),
}


def chime(name: str, rate: int) -> bytes:
    """A short two-note chime (int16 PCM): made here, no network, about 0.2 s."""
    notes = CHIMES[name]
    n = int(0.09 * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.006 * rate))
    parts = [(7000 * np.sin(2 * np.pi * f * t) * ramp).astype(np.int16) for f in notes]
    parts.append(np.zeros(int(0.02 * rate), dtype=np.int16))
    return np.concatenate(parts).astype("<i2").tobytes()


# --- announcer -------------------------------------------------------------------------------


def phrase_for(cfg: Config, event_name: str) -> str | None:
    """The configured phrase of an event (None: disabled or unknown)."""
    if event_name not in EVENTS:
        return None
    if event_name == "daily_limit" and cfg.conversation.daily_limit_minutes is None:
        return None  # no limit: the phrase is never spoken, so never synthesised or cached
    value = getattr(cfg.announcements, event_name)
    return value if isinstance(value, str) and value.strip() else None


class Announcer:
    """Speaks the configured phrase of a daemon event through the conversation's AudioPort."""

    def __init__(
        self,
        cfg: Config,
        audio: AudioPort,
        api_key: Secret | None,
        cut_agent: Callable[[], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._audio = audio
        self._cut_agent = cut_agent
        self._key = api_key
        self._lock = asyncio.Lock()
        self._pending = 0
        self._offline_until = 0.0
        self._chimes: dict[str, bytes] = {}
        if api_key:
            register_secret(api_key.reveal())

    def chime(self, name: str) -> None:
        """Play a chime now (nothing is waited for: it is meant for an idle box)."""
        rate = PCM_16000.rate
        pcm = self._chimes.get(name)
        if pcm is None:
            pcm = self._chimes[name] = chime(name, rate)
        self._play(pcm, rate)
        event(log, "chime", name=name)

    def busy(self) -> bool:
        """True while an announcement is waiting, being synthesised or playing."""
        return self._pending > 0

    def update_config(self, cfg: Config) -> None:
        self._cfg = cfg

    async def announce(self, event_name: str) -> None:
        """Speak the phrase of `event_name`; never raises (cancellation aside)."""
        cfg = self._cfg
        if not cfg.announcements.enabled:
            return
        text = phrase_for(cfg, event_name)
        if text is None:
            if event_name not in EVENTS:
                event(log, "announcement.unknown", logging.WARNING, event=event_name)
            return
        self._pending += 1
        try:
            async with self._lock:
                await self._announce(cfg, event_name, text)
        except Exception as exc:  # an announcement must never take the daemon down
            event(log, "announcement.failed", logging.WARNING, event=event_name, error=str(exc))
        finally:
            self._pending -= 1

    async def say(self, text: str, source: str) -> None:
        """Speak free text (Home Assistant's announce) as a phrase is spoken: from the cache,
        else live; the tone when neither can be had. Never raises (cancellation aside)."""
        self._pending += 1
        try:
            async with self._lock:
                await self._announce(self._cfg, source, text)
        except Exception as exc:
            event(log, "announcement.failed", logging.WARNING, event=source, error=str(exc))
        finally:
            self._pending -= 1

    async def _announce(self, cfg: Config, event_name: str, text: str) -> None:
        fmt = synthesis_format(cfg)
        try:
            rate = pcm_rate(fmt)
        except TtsError as exc:
            event(log, "tts.failed", logging.WARNING, event=event_name, error=exc.message)
            fmt, rate = PCM_16000.name, PCM_16000.rate
            pcm, source = tone(event_name, rate), "tone"
        else:
            pcm, source = await self._audio_for(cfg, event_name, text, fmt, rate)
        if not await self._make_room(cfg):
            event(log, "announcement.dropped", event=event_name, reason="agent still speaking")
            return
        self._play(pcm, rate)
        event(log, "announcement", event=event_name, source=source, format=fmt)
        await self._audio.drain(len(pcm) / 2 / rate + DRAIN_MARGIN_S)

    async def _audio_for(
        self, cfg: Config, event_name: str, text: str, fmt: str, rate: int
    ) -> tuple[bytes, str]:
        found = await self._spoken(cfg, event_name, text, fmt, rate)
        return found if found is not None else (tone(event_name, rate), "tone")

    async def _spoken(
        self, cfg: Config, label: str, text: str, fmt: str, rate: int
    ) -> tuple[bytes, str] | None:
        """The phrase from the cache, else live (then cached); None when neither works."""
        cache = PhraseCache(cache_dir(cfg))
        key = cache_key(cfg, text, fmt)
        pcm = cache.load(key, rate)
        if pcm is not None:
            return pcm, "cache"
        if self._key and time.monotonic() >= self._offline_until:
            try:
                pcm = await synthesize(text, cfg.tts, cfg.agent.api_base, self._key, fmt)
            except TtsError as exc:
                self._offline_until = time.monotonic() + OFFLINE_HOLD_S
                event(
                    log, "tts.failed", logging.WARNING, event=label, error=exc.message,
                    code=exc.code,
                )  # fmt: skip
            else:
                _store_quietly(cache, key, rate, pcm)
                return pcm, "tts"
        return None

    # --- what a timer's ring needs (timers.ringer.RingOutput) ------------------------------

    def cut(self) -> None:
        """Cut the agent's reply (the supervisor's barge-in), else what is playing."""
        if self._cut_agent is not None:
            self._cut_agent()
        elif self._audio.playing:
            self._audio.interrupt()

    def play_now(self, pcm: bytes, rate: int) -> None:
        self._play(pcm, rate)

    def hush(self) -> None:
        if self._audio.playing:
            self._audio.interrupt()

    async def phrase(self, text: str) -> tuple[bytes, int] | None:
        """A phrase as PCM (cache or live synthesis), never raising; None when not to be had."""
        cfg = self._cfg
        fmt = synthesis_format(cfg)
        try:
            rate = pcm_rate(fmt)
            found = await self._spoken(cfg, "timer", text, fmt, rate)
        except Exception as exc:  # a ring must never fail for its words
            event(log, "announcement.failed", logging.WARNING, event="timer", error=str(exc))
            return None
        return None if found is None else (found[0], rate)

    async def _make_room(self, cfg: Config) -> bool:
        """Apply the rule: wait for the agent to finish, or cut it. False: gave up waiting."""
        if cfg.announcements.rule == "interrupt":
            if self._cut_agent is not None:
                self._cut_agent()
            elif self._audio.playing:
                self._audio.interrupt()
            return True
        deadline = time.monotonic() + WAIT_LIMIT_S
        while self._audio.playing:  # polled: drain() would end the agent's reply early
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(WAIT_POLL_S)
        return True

    def _play(self, pcm: bytes, rate: int) -> None:
        """Queue the phrase in one synchronous step (nothing else can slip in between)."""
        current = getattr(self._audio, "output_format", None)
        audio = self._audio
        if isinstance(current, AudioFormat):
            samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
            if current.rate != rate:
                from voicebox.audio.resample import convert

                samples = convert(samples, rate, current.rate)
            audio.play(encode(samples, current))
            audio.end_reply()
        else:
            audio.set_output_format(AudioFormat("pcm", rate))
            audio.play(pcm)
            audio.end_reply()  # flushes the port's resampler before the format changes back
            audio.set_output_format(PCM_16000)


def _store_quietly(cache: PhraseCache, key: str, rate: int, pcm: bytes) -> None:
    try:
        cache.store(key, rate, pcm)
    except OSError as exc:
        event(
            log, "tts.cache_unwritable", logging.WARNING, path=str(cache.directory),
            error=exc.strerror or str(exc),
        )  # fmt: skip


# --- prefetch and the command ----------------------------------------------------------------


async def prefetch(cfg: Config, api_key: Secret | None) -> dict[str, str]:
    """Synthesise every configured phrase into the cache: phrase -> cached/synthesised/failed: …"""
    fmt = synthesis_format(cfg)
    try:
        rate = pcm_rate(fmt)
    except TtsError as exc:
        return {text: f"failed: {exc}" for name in EVENTS if (text := phrase_for(cfg, name))}
    cache = PhraseCache(cache_dir(cfg))
    results: dict[str, str] = {}
    for name in EVENTS:
        text = phrase_for(cfg, name)
        if text is None or text in results:
            continue
        key = cache_key(cfg, text, fmt)
        if cache.load(key, rate) is not None:
            results[text] = "cached"
            continue
        if not api_key:
            results[text] = "failed: no API key"
            continue
        try:
            pcm = await synthesize(text, cfg.tts, cfg.agent.api_base, api_key, fmt)
            cache.store(key, rate, pcm)
        except TtsError as exc:
            results[text] = f"failed: {exc}"
        except OSError as exc:
            results[text] = f"failed: cannot write the cache: {exc.strerror or exc}"
        else:
            results[text] = "synthesised"
    return results


def main_announcements(args: argparse.Namespace) -> int:
    """`voicebox announcements [--prefetch]`: list the phrases and their cache state, or fill it."""
    cfg, key = load_for_command(args.config)
    fmt = synthesis_format(cfg)
    try:
        rate = pcm_rate(fmt)
    except TtsError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.prefetch:
        results = asyncio.run(prefetch(cfg, key))
        for phrase, status in results.items():
            print(f"{status:<12} {phrase}")
        return 1 if any(s.startswith("failed") for s in results.values()) else 0
    cache = PhraseCache(cache_dir(cfg))
    for name in EVENTS:
        text = phrase_for(cfg, name)
        if text is None:
            print(f"{name:<13} (disabled)")
            continue
        cached = cache.load(cache_key(cfg, text, fmt), rate) is not None
        print(f"{name:<13} {'cached' if cached else 'not cached':<11} {text}")
    return 0
