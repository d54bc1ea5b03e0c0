"""The client tool registry and the daemon's built-in tools."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.convai.fakes import RecordingAudio
from voicebox import volume
from voicebox.convai.tools import ToolRegistry, builtin_tools


@pytest.mark.asyncio
async def test_sync_async_unknown_failing_and_slow_tools() -> None:
    reg = ToolRegistry()
    reg.register("echo", lambda p: f"echo {p['x']}")

    async def later(p: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return "done"

    async def slow(p: dict[str, Any]) -> str:
        await asyncio.sleep(30)
        return "never"

    def broken(p: dict[str, Any]) -> str:
        raise RuntimeError("lamp offline")

    reg.register("later", later)
    reg.register("slow", slow)
    reg.register("broken", broken)
    reg.register("silent", lambda p: "")
    assert await reg.run("echo", {"x": 1}, 1.0) == ("echo 1", False)
    assert await reg.run("later", {}, 1.0) == ("done", False)
    text, err = await reg.run("missing", {}, 1.0)
    assert err and "unknown tool 'missing'" in text and "echo" in text
    assert await reg.run("broken", {}, 1.0) == ("RuntimeError: lamp offline", True)
    text, err = await reg.run("slow", {}, 0.05)
    assert err and "timed out" in text
    assert await reg.run("silent", {}, 1.0) == ("Client tool: silent called successfully.", False)


@pytest.mark.asyncio
async def test_builtin_tools() -> None:
    audio = RecordingAudio()
    reg = builtin_tools(audio, status=lambda: {"state": "listening", "sessions": 2})
    assert reg.names() == ["get_status", "get_time", "set_volume"]
    assert await reg.run("set_volume", {"level": 0.25}, 1.0) == ("volume set to 25", False)
    assert audio.volume == pytest.approx(volume.gain(25))
    assert await reg.run("set_volume", {"level": 100}, 1.0) == ("volume set to 100", False)
    assert audio.volume == 1.0
    assert await reg.run("set_volume", {"level": "40%"}, 1.0) == ("volume set to 40", False)
    text, err = await reg.run("set_volume", {"level": 300}, 1.0)
    assert err and "0-100" in text and audio.volume == pytest.approx(volume.gain(40))
    assert await reg.run("set_volume", {"level": 0}, 1.0) == ("volume set to 0", False)
    assert audio.volume == 0.0
    text, err = await reg.run("set_volume", {}, 1.0)
    assert err and "level" in text
    text, err = await reg.run("get_time", {}, 1.0)
    assert not err and any(ch.isdigit() for ch in text)
    text, err = await reg.run("get_status", {}, 1.0)
    assert not err and json.loads(text) == {"sessions": 2, "state": "listening"}
