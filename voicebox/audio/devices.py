"""Audio device lookup (by name substring or index), the `voicebox devices` listing, and the
PortAudio re-initialisation used to find a device again after it was unplugged.

sounddevice is imported lazily so that file backends work where PortAudio is not installed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Literal

Kind = Literal["input", "output"]
NO_DEVICES_HINT = (
    "no audio devices found. If a sound card is attached, check that this user can open "
    "/dev/snd/* (member of the 'audio' group; under systemd: SupplementaryGroups=audio and "
    "DeviceAllow=char-alsa rw), and that ALSA lists it: aplay -l, arecord -l."
)


class AudioDeviceError(Exception):
    """A configured audio device cannot be used; the message names it and lists the candidates.

    `problem` is the part without the candidates (what the daemon waits for); `candidates` the
    devices that were there (for one log line, not every retry)."""

    def __init__(self, problem: str, candidates: str = "") -> None:
        super().__init__(f"{problem}; {candidates}" if candidates else problem)
        self.problem = problem
        self.candidates = candidates


def _sd() -> Any:
    try:
        import sounddevice
    except OSError as exc:  # libportaudio2 missing
        raise AudioDeviceError(
            f"PortAudio is not available ({exc}): install libportaudio2"
        ) from exc
    return sounddevice


def _channels(dev: dict[str, Any], kind: Kind) -> int:
    return int(dev["max_input_channels" if kind == "input" else "max_output_channels"])


def candidates(kind: Kind) -> list[tuple[int, str]]:
    """(index, name) of every device with channels of this kind."""
    return [
        (int(d["index"]), str(d["name"])) for d in _sd().query_devices() if _channels(d, kind) > 0
    ]


def _candidate_text(kind: Kind) -> str:
    found = candidates(kind)
    if not found:
        return f"no {kind} devices found"
    return f"{kind} devices: " + ", ".join(f"[{i}] {name!r}" for i, name in found)


def default_index(kind: Kind) -> int | None:
    """PortAudio's default device of this kind, or None when there is none."""
    try:
        idx = int(_sd().default.device[0 if kind == "input" else 1])
    except (TypeError, ValueError):
        return None
    if idx < 0:
        try:
            idx = int(_sd().query_hostapis(0)[f"default_{kind}_device"])
        except Exception:
            return None
    return idx if idx >= 0 else None


def find_device(spec: str | int | None, kind: Kind) -> int:
    """The device index for a configured name substring (case-insensitive), index or None."""
    if spec is None:
        idx = default_index(kind)
        if idx is None:
            raise AudioDeviceError(f"no default audio {kind} device", _candidate_text(kind))
        return idx
    if isinstance(spec, int) or spec.strip().isdigit():
        idx = int(spec)
        if any(i == idx for i, _ in candidates(kind)):
            return idx
        raise AudioDeviceError(
            f"audio.{kind}.device: no {kind} device with index {idx}", _candidate_text(kind)
        )
    wanted = spec.strip().lower()
    found = candidates(kind)
    for i, name in found:  # an exact name first, then the first substring match
        if name.lower() == wanted:
            return i
    for i, name in found:
        if wanted in name.lower():
            return i
    raise AudioDeviceError(
        f"audio.{kind}.device: no {kind} device matches {spec!r}", _candidate_text(kind)
    )


def device_name(index: int) -> str:
    return str(_sd().query_devices(index)["name"])


def max_channels(index: int, kind: Kind) -> int:
    return _channels(_sd().query_devices(index), kind)


def default_rate(index: int) -> int:
    return int(_sd().query_devices(index)["default_samplerate"])


def reinitialize() -> None:
    """Re-enumerate devices (PortAudio has no hot-plug). Closes every open stream."""
    sd = _sd()
    sd._terminate()
    sd._initialize()


def main_devices(args: argparse.Namespace) -> int:
    """`voicebox devices`: list inputs and outputs; `*` marks the defaults."""
    try:
        devices = list(_sd().query_devices())
    except AudioDeviceError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not devices:
        print(NO_DEVICES_HINT)
        return 0
    for kind in ("input", "output"):
        default = default_index(kind)
        print(f"{kind}s:")
        rows = [d for d in devices if _channels(d, kind) > 0]
        if not rows:
            print("  (none)")
        for d in rows:
            mark = "*" if int(d["index"]) == default else " "
            print(
                f"  {mark} {int(d['index']):>3}  {d['name']}  "
                f"{int(d['default_samplerate'])} Hz  "
                f"in={d['max_input_channels']} out={d['max_output_channels']}"
            )
    print("* default; set audio.input.device / audio.output.device to a name substring or index")
    return 0
