"""Mic audio the service may not have heard: the unconfirmed window and the replay plan. Pure.

What "confirmed" means. Every frame the service sends shows the link from it to us works, not
that it read what we sent: it streams agent audio ahead of playout, sends `ping` events on its
own clock, and a one-way freeze (a middlebox, a server that stopped reading) keeps them coming
while our audio goes nowhere. `vad_score`, `tentative_user_transcript` and `user_transcript`
show the service is listening, but carry no position: none says which of our frames it heard.
The one answer that does is the WebSocket pong to a ping we sent: the peer's WebSocket stack
answers a ping only after reading every byte before it on the same TCP stream (RFC 6455 5.5.2
and TCP's in-order delivery). So:

    A mic frame is confirmed once a pong arrives for a ping sent after the frame,
    or once a final `user_transcript` arrives after it was sent.

The second: a final transcript says the service took the user's turn, so the speech before it
was heard and answered; replaying its tail to the next session would make a phantom turn of a
fragment (the demo's 1012 right after a turn did: 0.26 s of the user's last words, answered
again). What it confirms beyond the turn is the hangover silence sent while the service decided
the turn had ended.

The link sends such a ping every probe interval while a conversation is active, so a healthy
link keeps about one interval plus a round trip unconfirmed. When a link ends in a transient
failure (drop, 1006, half-open, 1011, 1012, 1013...), the next session gets the unconfirmed
frames first, then what the resume buffer gathered since, in capture order, each frame once, the
newest `conversation.resume_buffer_s` of it (oldest dropped and counted). A clean close (1000) is
a close handshake, which says nothing of what the service read before it: ours, or the agent's
end_call, replays nothing; the service's own (the duration cap, a 1000 of its own) replays the
unconfirmed frames when the user was talking (the supervisor decides). A frame is replayed to at
most one session after the one it was first sent to, and frames are numbered at capture
(`seq`), so a frame replayed twice to one session is impossible by construction and checked
anyway.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from voicebox.audio.port import Chunk


@dataclass(frozen=True, slots=True)
class MicFrame:
    """One captured mic chunk, numbered in capture order."""

    seq: int
    chunk: Chunk
    rate: int
    replayed: bool = False  # sent again to a session after the one it was first sent to ended

    @property
    def seconds(self) -> float:
        return len(self.chunk) / self.rate if self.rate > 0 else 0.0


class FrameWindow:
    """Mic frames in capture order, bounded by duration (oldest dropped and counted).

    A link keeps the frames it sent and drops them as pongs confirm them (the unconfirmed
    window); the supervisor keeps the frames captured while no session is ready (the resume
    buffer).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._frames: deque[MicFrame] = deque()
        self._duration = 0.0
        self.dropped = 0  # frames pushed out because the window was full
        self.dropped_s = 0.0
        self.confirmed = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def duration_s(self) -> float:
        return self._duration

    @property
    def last_seq(self) -> int:
        """The newest frame sent (-1 if none): a ping sent now confirms up to it."""
        return self._frames[-1].seq if self._frames else -1

    def push(self, frame: MicFrame) -> None:
        self._frames.append(frame)
        self._duration += frame.seconds
        while self._frames and self._duration > self.seconds + 1e-9:
            old = self._frames.popleft()
            self._duration -= old.seconds
            self.dropped += 1
            self.dropped_s += old.seconds

    def confirm(self, upto_seq: int) -> None:
        """A pong came back for a ping sent when `upto_seq` was the newest frame."""
        frames = self._frames
        while frames and frames[0].seq <= upto_seq:
            self._duration -= frames.popleft().seconds
            self.confirmed += 1
        if not frames:
            self._duration = 0.0

    def take(self) -> list[MicFrame]:
        out = list(self._frames)
        self.clear()
        return out

    def clear(self) -> None:
        self._frames.clear()
        self._duration = 0.0


def has_voice(frames: Iterable[MicFrame], peak: int) -> bool:
    """Any frame reaching `peak` (int16): the user was talking in them."""
    return any(
        len(f.chunk) and (int(f.chunk.max()) >= peak or int(f.chunk.min()) <= -peak) for f in frames
    )


@dataclass(frozen=True)
class ReplayPlan:
    """What the next session gets first, and what did not fit."""

    frames: list[MicFrame]
    replayed_s: float  # of it, unconfirmed audio from the link that ended
    buffered_s: float  # of it, audio captured while no session was ready
    dropped_s: float  # oldest audio left out to stay within the limit
    dropped: int
    repeated_s: float = 0.0  # of the dropped, audio already replayed once (never twice)


def plan_replay(
    unconfirmed: Iterable[MicFrame],
    buffered: Iterable[MicFrame],
    limit_s: float,
    already_sent: set[int] | None = None,
) -> ReplayPlan:
    """Unconfirmed then buffered frames in seq order, each once, the newest `limit_s` of them.

    An unconfirmed frame that was itself a replay is not replayed again (counted as dropped):
    audio goes to at most one session after the one it was first sent to, so a link that keeps
    failing cannot carry the same speech into session after session. The frames returned from
    `unconfirmed` are marked `replayed`. `already_sent` holds seqs the receiving session already
    has (never sent again).
    """
    seen = set(already_sent or ())
    merged: list[tuple[MicFrame, bool]] = []
    repeats: list[MicFrame] = []
    for frame, replay in [(f, True) for f in unconfirmed] + [(f, False) for f in buffered]:
        if frame.seq in seen:
            continue
        seen.add(frame.seq)
        if replay and frame.replayed:
            repeats.append(frame)
            continue
        merged.append((replace(frame, replayed=True) if replay else frame, replay))
    merged.sort(key=lambda item: item[0].seq)
    kept: list[tuple[MicFrame, bool]] = []
    total = 0.0
    for frame, replay in reversed(merged):  # newest first, until the limit
        if total + frame.seconds > limit_s + 1e-9:
            break
        kept.append((frame, replay))
        total += frame.seconds
    kept.reverse()
    left = [f for f, _ in merged[: len(merged) - len(kept)]] + repeats
    return ReplayPlan(
        frames=[f for f, _ in kept],
        replayed_s=sum(f.seconds for f, r in kept if r),
        buffered_s=sum(f.seconds for f, r in kept if not r),
        dropped_s=sum(f.seconds for f in left),
        dropped=len(left),
        repeated_s=sum(f.seconds for f in repeats),
    )
