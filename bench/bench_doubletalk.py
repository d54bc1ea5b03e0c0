"""Double talk (issue 22): which processing stage loses the user's words said over the agent.

Both sides are espeak-ng speech (tones are noise to a suppressor): the agent reads sentences
non-stop at -18 dBFS through a simulated room (tests/audio/echo_rooms.run_room, the device
timeline the daemon sees), and the user says short utterances over it, each USER_OVER_ECHO_DB
above the echo at the mic (active levels), after SETTLE_S of agent speech. Each utterance is
cut into 30 ms windows where the clean utterance is active; a window is delivered when the
processed audio holds the clean utterance within 6 dB (its least-squares gain on the clean
window, after the run's processing delay and the phase a fixed filter puts on the user are
taken out: `user_path`). Also: what is left in those windows
besides the user (echo and distortion, against the echo there), the echo with the user silent
(a run without the user), and the processor's CPU. Each stage is switched off in turn
(mock.patch, as bench_echo does for speexdsp): noise suppression, the high-pass, speexdsp's MDF
ahead of AEC3, and the gate and the leak check; and, a candidate, MDF's output alone (AEC3 not
run on the reference's frames). What no row can switch off is AEC3's own residual suppressor:
the default row minus the others is its share.
Usage: .venv/bin/python bench/bench_doubletalk.py [--minutes M] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.audio.echo_rooms import run_room  # noqa: E402
from tests.wake import speech  # noqa: E402
from voicebox.audio.echo import gate, leak, linear_echo, processor  # noqa: E402
from voicebox.audio.echo.processor import ProcessingSettings  # noqa: E402

Floats = npt.NDArray[np.float64]
RATE = 16000
WINDOW = 480  # 30 ms
PATH_TAPS = 64  # the user's path is fitted over +-4 ms
AGENT_DBFS = -18.0
USER_OVER_ECHO_DB = 2.0  # the user this much above the echo at the mic (issue 22: 0-3 dB)
SETTLE_S = 12.0  # agent speech before the first utterance: the canceller is trusted by then
EVERY_S = 5.0  # an utterance starts this often
DELIVERED_DB = 6.0  # a window within this of the clean level is delivered
TARGET = 0.9  # of an utterance's windows

AGENT_SENTENCES = (
    "The weather today will be sunny with a light breeze from the west and highs near twenty.",
    "Tomorrow brings clouds in the morning, and rain is likely later, so take an umbrella.",
    "Over the weekend it gets a little colder, but the sun should be back on Sunday.",
    "Your next appointment is on Thursday at half past ten, at the dentist on Market Street.",
    "I have added milk, eggs and two loaves of bread to your shopping list for Saturday.",
    "The train to the city leaves every twenty minutes, and the last one goes at midnight.",
)
USER_UTTERANCES = (
    "No, stop, I meant Tuesday.",
    "Wait, what about Friday?",
    "Can you say that again?",
    "Tell me about the wind.",
    "Not that one, the other one.",
    "How cold will it get?",
)
USER_VOICES = ("en-gb", "en-us+m3", "en-gb-scotland")


@dataclass(frozen=True)
class Room:
    name: str
    delay_ms: float
    tail_ms: float
    echo_db: float
    direct_db: float | None


ROOMS = (  # bench_echo's small and large rooms, and RoomConfig's defaults
    Room("small", 10.0, 150.0, -12.0, 10.0),
    Room("default (RoomConfig)", 40.0, 250.0, -6.0, 10.0),
    Room("large", 60.0, 400.0, -6.0, 0.0),
)


def say(text: str, voice: str, speed: int) -> Floats:
    """espeak-ng's rendering (tests/wake/speech.py), its leading and trailing silence cut."""
    x = speech.say(text, voice, speed).astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 200)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def active_power(x: Floats) -> float:
    """Mean power over the 10 ms frames within 30 dB of the loudest (speech, not its pauses)."""
    frames = x[: len(x) - len(x) % 160].reshape(-1, 160)
    p = np.mean(frames * frames, axis=1)
    return float(np.mean(p[p > p.max() * 1e-3])) if len(p) else 0.0


def at_dbfs(x: Floats, dbfs: float) -> Floats:
    return x * (32768.0 * 10 ** (dbfs / 20)) / np.sqrt(max(active_power(x), 1e-9))


def agent_speech(seconds: float) -> Floats:
    parts: list[Floats] = []
    n = 0
    k = 0
    while n < seconds * RATE:
        s = at_dbfs(say(AGENT_SENTENCES[k % len(AGENT_SENTENCES)], "en-us", 160), AGENT_DBFS)
        parts += [s, np.zeros(int(0.25 * RATE))]
        n += len(s) + int(0.25 * RATE)
        k += 1
    return np.concatenate(parts)[: int(seconds * RATE)]


def lay_user(n: int, echo: Floats) -> tuple[Floats, list[tuple[int, int]]]:
    """Utterances every EVERY_S after SETTLE_S, each USER_OVER_ECHO_DB over the echo under it."""
    near = np.zeros(n)
    spans = []
    t = SETTLE_S
    k = 0
    while True:
        text = USER_UTTERANCES[k % len(USER_UTTERANCES)]
        u = say(text, USER_VOICES[k % len(USER_VOICES)], 150)
        a = int(t * RATE)
        if a + len(u) > n - RATE:
            break
        under = active_power(echo[a : a + len(u)])
        if under > 0:
            u = u * np.sqrt(under / active_power(u)) * 10 ** (USER_OVER_ECHO_DB / 20)
            near[a : a + len(u)] = u
            spans.append((a, a + len(u)))
        t += EVERY_S
        k += 1
    return near, spans


@dataclass
class Row:
    stage: str
    delivered: list[float]  # per utterance, the fraction of its windows delivered
    residual_db: float  # median over double-talk windows: out minus the user, against the echo
    echo_alone_db: float  # the user silent: out against the echo
    cpu_share: float


def processing_lag(out: Floats, near: Floats, spans: list[tuple[int, int]]) -> int:
    """The processor's delay (samples): where the output correlates best with the user."""

    def fit(lag: int) -> float:
        return sum(float(np.dot(out[a + lag : b + lag], near[a:b])) for a, b in spans)

    return max(range(0, 20 * 16), key=fit)


def user_path(out: Floats, clean: Floats) -> Floats:
    """The clean utterance as a fixed linear path would deliver it, at its own level: the
    least-squares FIR (PATH_TAPS either side) from clean to out over the utterance, its gain
    taken out. It holds the phase a filter puts on the user (speexdsp's DC notch turns 100-300
    Hz by a quarter of the signal) so that a turned phase does not count as a lost word."""
    n = len(clean)
    padded = np.concatenate([np.zeros(PATH_TAPS), clean, np.zeros(PATH_TAPS)])
    lagged = np.stack([padded[k : k + n] for k in range(2 * PATH_TAPS + 1)], axis=1)
    coef, *_ = np.linalg.lstsq(lagged, out, rcond=None)
    path: Floats = lagged @ coef
    return path * np.sqrt(active_power(clean) / max(active_power(path), 1e-9))


def judge(out_i16: Any, near: Floats, echo: Floats, spans: list[tuple[int, int]]) -> Row:
    out = np.asarray(out_i16, dtype=np.float64)
    lag = processing_lag(out, near, spans)
    out = np.concatenate([out[lag:], np.zeros(lag)])
    delivered = []
    residual = []
    for a, b in spans:
        floor = active_power(near[a:b]) * 10 ** (-20 / 10)
        heard = user_path(out[a:b], near[a:b])
        good = total = 0
        for w in range(a, b - WINDOW + 1, WINDOW):
            if float(np.mean(near[w : w + WINDOW] ** 2)) < floor:
                continue
            c = heard[w - a : w - a + WINDOW]
            o = out[w : w + WINDOW]
            g = float(np.dot(o, c) / np.dot(c, c))
            total += 1
            good += abs(20 * np.log10(abs(g) + 1e-9)) <= DELIVERED_DB
            e = echo[w : w + WINDOW]
            rest = o - g * c
            residual.append(10 * np.log10((np.mean(rest * rest) + 1e-3) / (np.mean(e * e) + 1e-3)))
        delivered.append(good / max(1, total))
    return Row("", delivered, float(np.median(residual)), float("nan"), 0.0)


def echo_alone(out_i16: Any, echo: Floats, far: Floats) -> float:
    out = np.asarray(out_i16, dtype=np.float64)
    skip = int(SETTLE_S * RATE)
    m = min(len(out), len(echo))
    audible = np.abs(far[skip:m]) > 0
    e, o = echo[skip:m][audible], out[skip:m][audible]
    return float(10 * np.log10((np.mean(o * o) + 1e-3) / (np.mean(e * e) + 1e-3)))


STAGES: dict[str, tuple[ProcessingSettings, str]] = {
    "processing off": (
        ProcessingSettings(echo_cancellation=False, noise_suppression="off", high_pass=False),
        "",
    ),
    "default (AEC3 + speexdsp MDF + NS moderate + high-pass)": (ProcessingSettings(), ""),
    "noise suppression off": (ProcessingSettings(noise_suppression="off"), ""),
    "high-pass off": (ProcessingSettings(high_pass=False), ""),
    "speexdsp MDF off (AEC3 alone)": (ProcessingSettings(), "no-mdf"),
    "gate and leak check off": (ProcessingSettings(), "open"),
    "speexdsp MDF alone (AEC3 bypassed once MDF feeds it; gate open)": (
        ProcessingSettings(noise_suppression="off", high_pass=False),
        "mdf-alone",
    ),
}


class WithoutAec3:
    """A processing module that hands the near end back unchanged when given a reference."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def process(self, near: Any, far: Any = None) -> Any:
        return near.copy() if far is not None else self.inner.process(near)


@contextlib.contextmanager
def patched(how: str) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if how == "no-mdf":
            stack.enter_context(mock.patch.object(linear_echo, "available", lambda: False))
        if how == "mdf-alone":
            apm = processor._apm
            stack.enter_context(
                mock.patch.object(
                    processor,
                    "_apm",
                    lambda s, echo: WithoutAec3(apm(s, echo)) if echo else apm(s, echo),
                )
            )
        if how in ("open", "mdf-alone"):
            stack.enter_context(mock.patch.object(gate.EchoGate, "trusted", lambda self: True))
            stack.enter_context(mock.patch.object(leak.EchoLeakCheck, "leaking", lambda *a: False))
        yield


def run(room: Room, far: Floats) -> list[Row]:
    common: dict[str, Any] = {
        "delay_ms": room.delay_ms,
        "tail_ms": room.tail_ms,
        "echo_db": room.echo_db,
        "direct_db": room.direct_db,
    }
    plain = STAGES["processing off"][0]
    echo = run_room(far, None, settings=plain, **common).echo
    near, spans = lay_user(len(echo), echo)
    rows = []
    for stage, (settings, how) in STAGES.items():
        with patched(how):
            t0 = time.process_time()
            both = run_room(far[: len(echo)], near, settings=settings, **common)
            cpu = time.process_time() - t0
            solo = run_room(far[: len(echo)], None, settings=settings, **common)
        row = judge(both.out, near, echo, spans)
        row.stage = stage
        row.echo_alone_db = echo_alone(solo.out, echo, far)
        row.cpu_share = cpu / (len(echo) / RATE)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=None, help="agent speech (default 2)")
    parser.add_argument("--quick", action="store_true", help="1 minute")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("bench_doubletalk: espeak-ng is not installed (scripts/bootstrap.sh installs it)")
        return 1
    minutes = args.minutes or (1.0 if args.quick else 2.0)
    start = time.monotonic()
    far = agent_speech(minutes * 60)
    print("# Double talk: the user's words over the agent, stage by stage")
    print()
    print(
        f"espeak-ng on both sides: the agent non-stop at {AGENT_DBFS:.0f} dBFS for "
        f"{minutes:.0f} min, the user {USER_OVER_ECHO_DB:.0f} dB over the echo at the mic, an "
        f"utterance every {EVERY_S:.0f} s after {SETTLE_S:.0f} s; a 30 ms window is delivered "
        f"within {DELIVERED_DB:.0f} dB of the clean utterance; target (issue 22): every "
        f"utterance >= {100 * TARGET:.0f} % of its windows, the rest in them <= -20 dB, the "
        "echo alone <= -30 dB."
    )
    for room in ROOMS:
        rows = run(room, far)
        print()
        print(
            f"Room {room.name} (delay {room.delay_ms:.0f} ms, tail {room.tail_ms:.0f} ms, echo "
            f"{room.echo_db:+.0f} dB, direct {room.direct_db} dB), "
            f"{len(rows[0].delivered)} utterances:"
        )
        print()
        print(
            "| stage | utterances >= 90 % delivered | windows delivered, median / least "
            "utterance | the rest in double talk (echo, distortion) | echo alone | CPU (process "
            "time of the run) |"
        )
        print("|---|---|---|---|---|---|")
        for r in rows:
            whole = sum(d >= TARGET for d in r.delivered)
            print(
                f"| {r.stage} | {whole}/{len(r.delivered)} | "
                f"{100 * float(np.median(r.delivered)):.0f} % / {100 * min(r.delivered):.0f} % | "
                f"{r.residual_db:+.1f} dB | {r.echo_alone_db:+.1f} dB | "
                f"{100 * r.cpu_share:.2f} % |"
            )
    print()
    print(
        "- AEC3's residual suppressor cannot be switched off on its own (pywebrtc-audio "
        "exposes none of its settings); the last row runs the same processor with AEC3 left "
        "out where the agent is audible, so the default row against it is that suppressor's "
        "share. These rooms are linear (no loudspeaker distortion), which flatters a linear "
        f"filter such as MDF. Took {time.monotonic() - start:.0f} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
