"""Client tools the agent can call: a registry of named handlers, and the daemon's built-in tools.

A handler takes the call's parameters dict and returns a string (sync or async). `ToolRegistry.run`
never raises: an unknown tool, a failing handler or a timeout becomes an error result for the agent.
Sync handlers run on the event loop and must be quick; slow work belongs in an async handler.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from voicebox.audio.port import AudioPort

ToolFn = Callable[[dict[str, Any]], "str | Awaitable[str]"]


class ToolRegistry:
    """Named client tools."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolFn] = {}

    def register(self, name: str, fn: ToolFn) -> None:
        if not name:
            raise ValueError("a tool needs a name")
        self._tools[name] = fn

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    async def run(
        self, name: str, parameters: dict[str, Any], timeout_s: float
    ) -> tuple[str, bool]:
        """Call a tool: (result text, is_error)."""
        fn = self._tools.get(name)
        if fn is None:
            return f"unknown tool {name!r}; available: {', '.join(self.names()) or 'none'}", True
        try:
            async with asyncio.timeout(timeout_s):
                result = fn(parameters)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            return f"tool {name!r} timed out after {timeout_s:g} s", True
        except Exception as exc:  # a tool's failure is reported to the agent, never raised
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True
        if not isinstance(result, str):
            result = json.dumps(result) if result is not None else ""
        return result or f"Client tool: {name} called successfully.", False


def _level(parameters: dict[str, Any]) -> float:
    for key in ("level", "volume", "value"):
        if key in parameters:
            raw = parameters[key]
            break
    else:
        raise ValueError("missing parameter 'level' (0..1 or 0..100)")
    if isinstance(raw, str):
        raw = raw.strip().rstrip("%")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number, got {raw!r}") from None
    if not 0 <= value <= 100 or value != value:
        raise ValueError(f"level must be within 0..1 or 0..100, got {value:g}")
    return value / 100.0 if value > 1 else value


def builtin_tools(
    audio: AudioPort, status: Callable[[], dict[str, Any]] | None = None
) -> ToolRegistry:
    """The daemon's own tools: get_time, set_volume, get_status."""
    registry = ToolRegistry()

    def get_time(parameters: dict[str, Any]) -> str:
        now = datetime.datetime.now().astimezone()
        return now.strftime("%A %d %B %Y, %H:%M %Z").strip()

    def set_volume(parameters: dict[str, Any]) -> str:
        level = _level(parameters)
        audio.set_volume(level)
        return f"volume set to {round(level * 100)}%"

    def get_status(parameters: dict[str, Any]) -> str:
        data = status() if status is not None else {}
        return json.dumps(data, default=str, sort_keys=True)

    registry.register("get_time", get_time)
    registry.register("set_volume", set_volume)
    registry.register("get_status", get_status)
    return registry
