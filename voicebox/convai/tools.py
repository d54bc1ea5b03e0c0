"""Client tools the agent can call: a registry of named handlers, and the daemon's built-in tools.

A handler takes the call's parameters dict and returns a string (sync or async). `ToolRegistry.run`
never raises: an unknown tool, a failing handler or a timeout becomes an error result for the agent.
Sync handlers run on the event loop and must be quick; slow work belongs in an async handler.
A tool registered with a `ToolSpec` can be declared on the agent: `ToolSpec.definition()` is the
client tool as the agents platform takes it (`voicebox tools` prints them). `time_variables` is
the box's clock as the dynamic variables each session sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import inspect
import json
import os
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voicebox import volume
from voicebox.audio.port import AudioPort

ToolFn = Callable[[dict[str, Any]], "str | Awaitable[str]"]
ParamType = Literal["string", "number", "integer", "boolean"]
RESPONSE_TIMEOUT_S = 10  # what a tool is declared to answer within (the supervisor's own bound)


@dataclass(frozen=True)
class Param:
    """One parameter of a client tool; `example` is a value its handler accepts."""

    name: str
    type: ParamType
    description: str
    example: Any
    required: bool = True


@dataclass(frozen=True)
class ToolSpec:
    """What the agent is told about a client tool."""

    name: str
    description: str
    params: tuple[Param, ...] = ()
    expects_response: bool = True
    response_timeout_s: int = RESPONSE_TIMEOUT_S

    def definition(self) -> dict[str, Any]:
        """The client tool's JSON, as the agents platform takes it (tool_config)."""
        properties = {p.name: {"type": p.type, "description": p.description} for p in self.params}
        return {
            "type": "client",
            "name": self.name,
            "description": self.description,
            "expects_response": self.expects_response,
            "response_timeout_secs": self.response_timeout_s,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": [p.name for p in self.params if p.required],
            },
        }

    def example(self) -> dict[str, Any]:
        return {p.name: p.example for p in self.params}


class ToolRegistry:
    """Named client tools."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolFn] = {}
        self._specs: dict[str, ToolSpec] = {}

    def register(self, name: str, fn: ToolFn, spec: ToolSpec | None = None) -> None:
        if not name:
            raise ValueError("a tool needs a name")
        if spec is not None and spec.name != name:
            raise ValueError(f"tool {name!r} registered with the spec of {spec.name!r}")
        self._tools[name] = fn
        if spec is not None:
            self._specs[name] = spec

    def names(self) -> list[str]:
        return sorted(self._tools)

    def specs(self) -> list[ToolSpec]:
        """The declared tools, by name."""
        return [self._specs[n] for n in sorted(self._specs)]

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
        except ValueError as exc:  # a bad parameter: the handler's sentence says what was wrong
            return str(exc) or type(exc).__name__, True
        except Exception as exc:  # a tool's failure is reported to the agent, never raised
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True
        if not isinstance(result, str):
            result = json.dumps(result) if result is not None else ""
        return result or f"Client tool: {name} called successfully.", False


def _level(parameters: dict[str, Any]) -> int:
    for key in ("level", "volume", "value"):
        if key in parameters:
            raw = parameters[key]
            break
    else:
        raise ValueError("missing parameter 'level' (0-100)")
    if isinstance(raw, str):
        raw = raw.strip().rstrip("%")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number 0-100, got {raw!r}") from None
    if not 0 <= value <= 100 or value != value:
        raise ValueError(f"level must be within 0-100, got {value:g}")
    return round(value * 100) if 0 < value < 1 else round(value)  # 0.4: a fraction, 40


def local_zone() -> datetime.tzinfo:
    """The box's time zone: the IANA zone named by TZ, the /etc/localtime link or /etc/timezone
    when it agrees with the system's current offset, else that offset."""
    system = datetime.datetime.now().astimezone()
    tz = os.environ.get("TZ")
    names = [tz.removeprefix(":")] if tz is not None else [os.path.realpath("/etc/localtime")]
    if tz is None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            names.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in names:
        if "/zoneinfo/" in name:  # a path into the zone database
            name = name.split("/zoneinfo/", 1)[1]
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
        if system.astimezone(zone).utcoffset() == system.utcoffset():
            return zone
    return system.tzinfo if system.tzinfo is not None else datetime.UTC


def local_now() -> datetime.datetime:
    """The box's wall-clock time, in its time zone."""
    return datetime.datetime.now(local_zone())


def time_variables(now: datetime.datetime) -> dict[str, str]:
    """The dynamic variables that tell the agent the box's time: `local_time` and `time_zone`."""
    key = getattr(now.tzinfo, "key", None)
    zone = key if isinstance(key, str) and key else (now.tzname() or now.strftime("UTC%z"))
    return {"local_time": now.strftime("%A %d %B %Y, %H:%M"), "time_zone": zone}


GET_TIME = ToolSpec("get_time", "The box's local date, time and time zone.")
SET_VOLUME = ToolSpec(
    "set_volume",
    "Set the speaker's volume. 0 is silent, 100 the loudest; each 10 is about 4 dB.",
    (Param("level", "integer", "the new volume, 0-100", 40),),
)
GET_STATUS = ToolSpec(
    "get_status", "The box's state as JSON: connection, audio, usage, volume, timers."
)


def builtin_tools(
    audio: AudioPort,
    status: Callable[[], dict[str, Any]] | None = None,
    set_level: Callable[[int, str], int] | None = None,
) -> ToolRegistry:
    """The daemon's own tools: get_time, set_volume, get_status. `set_level(level, source)` sets
    the volume (the daemon's, which keeps it); without it the port's gain is set directly."""
    registry = ToolRegistry()

    def get_time(parameters: dict[str, Any]) -> str:
        now = local_now()
        return now.strftime("%A %d %B %Y, %H:%M %Z").strip()

    def set_volume(parameters: dict[str, Any]) -> str:
        level = _level(parameters)
        if set_level is not None:
            level = set_level(level, "tool")
        else:
            audio.set_volume(volume.gain(level))
        return f"volume set to {level}"

    def get_status(parameters: dict[str, Any]) -> str:
        data = status() if status is not None else {}
        return json.dumps(data, default=str, sort_keys=True)

    registry.register("get_time", get_time, GET_TIME)
    registry.register("set_volume", set_volume, SET_VOLUME)
    registry.register("get_status", get_status, GET_STATUS)
    return registry
