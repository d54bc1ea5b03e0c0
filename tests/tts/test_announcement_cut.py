"""An announcement under `rule: interrupt` cuts the agent's turn in the session, as a barge-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.convai.rig import rig
from tests.tts.conftest import make_config
from voicebox.announcements import Announcer, tone
from voicebox.simulator.server import SimConfig
from voicebox.state import State
from voicebox.tts import pcm_rate, synthesis_format

QUIET = {"first_message": "", "ping_interval_s": 0.3, "max_reply_s": 3.0}


@pytest.mark.asyncio
async def test_interrupt_rule_drops_the_rest_of_the_agents_turn(tmp_path: Path) -> None:
    # The simulator streams a 3 s reply about 1 s ahead of real time and keeps streaming it after
    # the phrase cuts it locally (user_activity does not stop a turn): none of it may play after.
    async with rig(SimConfig(**QUIET), conversation__mode="push_to_talk") as r:  # type: ignore[arg-type]
        r.sup.press()
        await r.wait_state(State.LISTENING)
        r.sup.release()
        await r.sim.speak("words " * 40)
        await r.wait_state(State.SPEAKING)
        cfg = make_config(tmp_path, "http://127.0.0.1:9", **{"announcements.rule": "interrupt"})
        announcer = Announcer(cfg, r.audio, None, cut_agent=r.sup.cut_agent)  # no key: the tone
        mark = len(r.audio.events)
        await announcer.announce("reconnecting")
        phrase = ("play", tone("reconnecting", pcm_rate(synthesis_format(cfg))))
        at = r.audio.events.index(phrase)
        assert ("interrupt", None) in r.audio.events[mark:at]  # the agent was cut first
        assert r.audio.events[at + 1] == ("end_reply", None)
        conn = r.sim.connection(1)
        await r.sim.wait_for(lambda: conn.user_activity >= 1)  # the service was told
        # The cut reply streams on until the simulator's agent_response_complete (an end_reply).
        await r.wait(lambda: ("end_reply", None) in r.audio.events[at + 2 :])
        after = [kind for kind, _ in r.audio.events[at + 2 :]]
        assert "play" not in after
        assert r.sup.snapshot()["counters"]["stale_audio"] > 0
