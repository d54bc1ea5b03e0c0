"""The simulator's get-agent endpoint and how it enforces an agent's override settings."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from tests.simulator.client import convai
from voicebox.convai import messages as m
from voicebox.convai.policy import EndClass, classify_end
from voicebox.simulator.server import SimConfig, Simulator

KEY = "sk-agents"


def get(url: str, key: str | None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, headers={"xi-api-key": key} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.mark.asyncio
async def test_get_agent_answers_200_401_404_like_the_service() -> None:
    config = SimConfig(
        api_key=KEY,
        agent_ids=frozenset({"a1", "locked"}),
        overrides_disabled=frozenset({"locked"}),
        require_signature=True,
    )
    async with Simulator(config) as sim:
        status, body = await asyncio_get(f"{sim.url}/v1/convai/agents/a1", KEY)
        assert status == 200 and body["agent_id"] == "a1"
        settings = body["platform_settings"]
        assert isinstance(settings, dict) and settings["auth"]["enable_auth"] is True
        flags = settings["overrides"]["conversation_config_override"]
        assert flags["agent"]["first_message"] is True and flags["tts"]["voice_id"] is True
        _, locked = await asyncio_get(f"{sim.url}/v1/convai/agents/locked", KEY)
        locked_flags = locked["platform_settings"]["overrides"]  # type: ignore[index]
        assert locked_flags["conversation_config_override"]["agent"]["language"] is False
        assert (await asyncio_get(f"{sim.url}/v1/convai/agents/a1", "sk-bad"))[0] == 401
        assert (await asyncio_get(f"{sim.url}/v1/convai/agents/a1", None))[0] == 401
        status, body = await asyncio_get(f"{sim.url}/v1/convai/agents/nope", KEY)
        assert status == 404 and body["detail"]["status"] == "agent_not_found"  # type: ignore[index]


async def asyncio_get(url: str, key: str | None) -> tuple[int, dict[str, object]]:
    return await asyncio.to_thread(get, url, key)


@pytest.mark.asyncio
async def test_an_override_the_agent_forbids_ends_the_session_as_a_config_error() -> None:
    config = SimConfig(overrides_disabled=frozenset({"locked"}))
    async with Simulator(config) as sim:
        init = m.initiation(overrides={"agent": {"first_message": "Hi"}})
        async with convai(sim.ws_url, initiation=init, agent_id="locked") as c:
            assert await c.wait_closed() == 1008
            errors = c.of(m.ErrorEvent)
            assert errors and errors[0].error_type == "override_error"
            end = classify_end(
                close_code=c.close_code,
                close_reason=c.close_reason or "",
                error_type=errors[0].error_type,
                error_message=errors[0].message,
            )
            assert end.end_class is EndClass.CONFIG
            assert "override not enabled" in end.reason
            assert not c.of(m.Metadata)
        async with convai(sim.ws_url, agent_id="locked") as c:  # no overrides: talks as usual
            await c.wait_for(lambda: c.of(m.Metadata))
