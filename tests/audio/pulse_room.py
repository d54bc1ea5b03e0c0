"""A room through a real sound server: a private userspace PulseAudio with a `speaker` null sink,
a `micmix` null sink the microphone records (micmix.monitor), and the speaker's monitor looped
into micmix (50 ms, -6 dB): the echo path. The user's voice is played into micmix with paplay.

Clients reach it through ALSA's `pulse` plugin (PortAudio devices `pulse` and `default`) with
HOME holding an .asoundrc and PULSE_SERVER naming the socket (`client_env`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

TOOLS = ("pulseaudio", "pactl", "paplay")
ECHO_GAIN = 0.501187  # -6 dB on the loopback
PLUGIN_GLOBS = ("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",)


def missing() -> str | None:
    """Why the room cannot be built here, or None."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if not any(Path("/").glob(g.lstrip("/")) for g in PLUGIN_GLOBS):
        absent.append("ALSA's pulse plugin")
    if absent:
        return (
            f"PulseAudio room unavailable: {', '.join(absent)} missing "
            "(make bootstrap installs pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    return None


@dataclass
class PulseRoom:
    runtime: Path  # PULSE_RUNTIME_PATH: the socket `native` lives here
    home: Path  # a HOME for clients: its .asoundrc routes ALSA to PulseAudio

    @property
    def server(self) -> str:
        return f"unix:{self.runtime}/native"

    def client_env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "PULSE_SERVER": self.server,
            "PULSE_RUNTIME_PATH": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.runtime),
        }

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.client_env()}

    def pactl(self, *args: str) -> str:
        proc = subprocess.run(
            ["pactl", *args], env=self._env(), capture_output=True, text=True, timeout=10
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def say(self, samples: npt.NDArray[np.int16], rate: int = 16000) -> subprocess.Popen[bytes]:
        """Play the user's voice into the microphone's sink (returns the paplay process)."""
        path = self.runtime / f"say-{time.monotonic_ns()}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples.astype("<i2").tobytes())
        return subprocess.Popen(
            ["paplay", "--device=micmix", str(path)],
            env=self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def _room_pa(runtime: Path) -> str:
    return (
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={runtime}/native\n"
        "load-module module-null-sink sink_name=speaker\n"
        "load-module module-null-sink sink_name=micmix\n"
        "load-module module-loopback source=speaker.monitor sink=micmix latency_msec=50\n"
        "set-default-sink speaker\n"
        "set-default-source micmix.monitor\n"
    )


@contextlib.contextmanager
def pulse_room(log_path: Path) -> Iterator[PulseRoom]:
    """Start a private PulseAudio daemon with the room, yield it, and stop it."""
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    # a short private path: the socket's path must fit in sun_path (108 bytes)
    runtime = Path(tempfile.mkdtemp(prefix="vbpa-"))
    runtime.chmod(0o700)
    home = runtime / "home"
    home.mkdir()
    (home / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    (runtime / "room.pa").write_text(_room_pa(runtime))
    room = PulseRoom(runtime, home)
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            "pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "-n",
            "-F", str(runtime / "room.pa"), "--use-pid-file=no", "--log-target=stderr",
        ],
        env=room._env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited {proc.returncode}: see {log_path}")
            try:
                room.pactl("info")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        (loopback,) = [
            line.split()[0]
            for line in room.pactl("list", "short", "sink-inputs").splitlines()
            if "module-loopback" in line
        ]
        room.pactl("set-sink-input-volume", loopback, str(ECHO_GAIN))
        yield room
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
