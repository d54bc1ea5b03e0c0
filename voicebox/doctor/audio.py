"""Audio checks: the configured devices exist and open at their rates, the mic's level over 3 s
(noise floor and peak in dBFS), and a short tone on the speaker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebox.audio import devices
from voicebox.audio.devices import AudioDeviceError
from voicebox.config import AudioConfig, InputConfig, OutputConfig
from voicebox.doctor.report import Check, fail, ok, warn

LISTEN_S = 3.0
BLOCK_S = 0.05
SILENCE_DBFS = -90.0
FLOOR_HIGH_DBFS = -35.0
CLIP_FRACTION = 0.001
TONE_S = 0.6
TONE_HZ = 440.0
TONE_DBFS = -12.0
GAIN_FIX = "check the mic gain and mute switch in alsamixer (F4: capture), or pick another device"


@dataclass(frozen=True)
class Level:
    """A mic recording summarised: noise floor (10th percentile of 50 ms RMS) and peak, dBFS."""

    floor_dbfs: float
    peak_dbfs: float
    clipped: float  # fraction of samples at full scale

    @property
    def text(self) -> str:
        return f"floor {self.floor_dbfs:.1f} dBFS, peak {self.peak_dbfs:.1f} dBFS"


def dbfs(value: float) -> float:
    return 20 * math.log10(value / 32768) if value > 0 else -120.0


def measure(samples: npt.NDArray[np.int16], rate: int) -> Level:
    x = samples.astype(np.float64)
    block = max(1, int(rate * BLOCK_S))
    n = len(x) // block
    if n == 0:
        return Level(-120.0, -120.0, 0.0)
    rms = np.sqrt(np.mean(x[: n * block].reshape(n, block) ** 2, axis=1))
    floor = float(np.percentile(rms, 10))
    peak = float(np.max(np.abs(x)))
    clipped = float(np.mean(np.abs(x) >= 32767))
    return Level(dbfs(floor), dbfs(peak), clipped)


def judge(level: Level, device: str) -> Check:
    name = "mic level"
    if level.peak_dbfs <= SILENCE_DBFS:
        return warn(name, f"{device}: digital silence over {LISTEN_S:g} s", GAIN_FIX)
    if level.clipped >= CLIP_FRACTION:
        return warn(
            name,
            f"{device}: clipping ({level.clipped:.1%} of samples at full scale), {level.text}",
            "lower the capture gain in alsamixer",
        )
    if level.floor_dbfs > FLOOR_HIGH_DBFS:
        return warn(
            name,
            f"{device}: {level.text}: the floor is so high that speech will not stand out",
            "lower the capture gain, or move the mic away from fans and speakers",
        )
    return ok(name, f"{device}: {level.text} over {LISTEN_S:g} s")


def tone(rate: int, seconds: float = TONE_S) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    amp = 32767 * 10 ** (TONE_DBFS / 20)
    return (amp * ramp * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def _sd() -> Any:
    return devices._sd()


def open_stream(kind: devices.Kind, index: int, rate: int) -> Any:
    """A started blocking stream, mono if the device has it, else its channel count (max 2)."""
    sd = _sd()
    cls = sd.InputStream if kind == "input" else sd.OutputStream
    most = devices.max_channels(index, kind)
    error: Exception | None = None
    for channels in sorted({1, min(2, max(1, most))}):
        try:
            stream = cls(device=index, samplerate=rate, channels=channels, dtype="int16")
            stream.start()
            return stream
        except sd.PortAudioError as exc:
            error = exc
    raise AudioDeviceError(f"cannot open at {rate} Hz: {error}")


def _device(kind: devices.Kind, spec: str | int | None) -> tuple[int, str, int]:
    index = devices.find_device(spec, kind)
    return index, devices.device_name(index), devices.default_rate(index)


def check_audio(cfg: AudioConfig, quiet: bool) -> list[Check]:
    try:
        sd = _sd()
        count = len(sd.query_devices())
    except AudioDeviceError as exc:
        if cfg.input.backend == "file" and cfg.output.backend == "file":
            count = 0
        else:
            return [warn("audio", str(exc), "install libportaudio2 (scripts/install.sh does)")]
    except Exception as exc:  # PortAudio can fail to initialise on odd systems
        return [warn("audio", f"PortAudio: {exc}", "check that ALSA works: aplay -l")]
    return [check_input(cfg.input, count), check_output(cfg.output, count, quiet)]


def _no_devices(name: str) -> Check:
    return warn(
        name,
        "no sound devices on this machine: cannot check",
        "attach the sound card; check it is listed by aplay -l / arecord -l",
    )


def check_input(cfg: InputConfig, count: int) -> Check:
    name = "mic level"
    if cfg.backend == "file":
        if cfg.path and Path(cfg.path).is_file():
            return ok("microphone", f"file backend: {cfg.path}")
        return fail("microphone", f"file backend: no file {cfg.path!r}", "fix audio.input.path")
    if count == 0:
        return _no_devices("microphone")
    try:
        index, dev, default = _device("input", cfg.device)
    except AudioDeviceError as exc:
        return fail("microphone", str(exc), "set audio.input.device (see `voicebox devices`)")
    rate = cfg.sample_rate or default
    label = f"[{index}] {dev!r} at {rate} Hz"
    try:
        stream = open_stream("input", index, rate)
    except AudioDeviceError as exc:
        return fail(
            "microphone",
            f"[{index}] {dev!r}: {exc}",
            "set audio.input.sample_rate to a rate the device supports, or stop voicebox if "
            "it holds the device",
        )
    blocks: list[npt.NDArray[np.int16]] = []
    try:
        frames = int(rate * BLOCK_S)
        for _ in range(int(LISTEN_S / BLOCK_S)):
            data, _overflow = stream.read(frames)
            blocks.append(np.array(data[:, 0], dtype=np.int16))
    except Exception as exc:
        return fail(name, f"{label}: reading failed: {exc}", "check the device with arecord -l")
    finally:
        stream.close(ignore_errors=True)
    return judge(measure(np.concatenate(blocks), rate), label)


def check_output(cfg: OutputConfig, count: int, quiet: bool) -> Check:
    name = "speaker"
    if cfg.backend == "file":
        return ok(name, f"file backend: {cfg.path}")
    if count == 0:
        return _no_devices(name)
    try:
        index, dev, default = _device("output", cfg.device)
    except AudioDeviceError as exc:
        return fail(name, str(exc), "set audio.output.device (see `voicebox devices`)")
    rate = cfg.sample_rate or default
    label = f"[{index}] {dev!r} at {rate} Hz"
    try:
        stream = open_stream("output", index, rate)
    except AudioDeviceError as exc:
        return fail(
            name,
            f"[{index}] {dev!r}: {exc}",
            "set audio.output.sample_rate to a rate the device supports, or stop voicebox if "
            "it holds the device",
        )
    try:
        if quiet:
            return ok(name, f"{label} opens (tone skipped: --quiet)")
        pcm = tone(rate)
        stream.write(np.repeat(pcm[:, None], stream.channels, axis=1))
        stream.stop()  # plays out what is buffered
        return ok(name, f"{label}: played a {TONE_S:g} s {TONE_HZ:g} Hz tone")
    except Exception as exc:
        return fail(name, f"{label}: writing failed: {exc}", "check the device with aplay -l")
    finally:
        stream.close(ignore_errors=True)
