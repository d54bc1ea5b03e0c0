"""The client tools the box offers an agent: their definitions (`voicebox tools`), and how they
compare with the client tools an agent declares (doctor).

An agent declares tools inline in `conversation_config.agent.prompt.tools` (each with a `type`:
client, system, webhook, ...) and/or as workspace tools in `prompt.tool_ids`, each read with
`GET /v1/convai/tools/{tool_id}` (its `tool_config`). Only client tools run on the box.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebox.config import EX_CONFIG, Config, ConfigError
from voicebox.convai.tools import GET_STATUS, GET_TIME, SET_VOLUME, ToolSpec
from voicebox.timers import tools as timer_tools


def builtin_specs(cfg: Config) -> list[ToolSpec]:
    """The daemon's built-in client tools with this config, by name."""
    specs = [GET_TIME, SET_VOLUME, GET_STATUS]
    if cfg.timers.enabled:
        specs += timer_tools.SPECS
    return sorted(specs, key=lambda s: s.name)


def definitions(cfg: Config) -> list[dict[str, Any]]:
    """Each built-in tool as the agents platform takes a client tool."""
    return [spec.definition() for spec in builtin_specs(cfg)]


@dataclass(frozen=True)
class Declared:
    """What an agent's settings show of its tools: the client tool names found inline, and the
    workspace tool ids (`tool_ids`) still to be read."""

    client: frozenset[str]
    tool_ids: tuple[str, ...]


def declared_tools(agent: Any) -> Declared | None:
    """The tools in a get-agent answer; None when it has no `conversation_config.agent.prompt`."""
    prompt: Any = agent
    for part in ("conversation_config", "agent", "prompt"):
        prompt = prompt.get(part) if isinstance(prompt, Mapping) else None
    if not isinstance(prompt, Mapping):
        return None
    inline = prompt.get("tools")
    names = {n for n in map(client_tool_name, inline if isinstance(inline, list) else []) if n}
    ids = prompt.get("tool_ids")
    tool_ids = tuple(i for i in ids if isinstance(i, str) and i) if isinstance(ids, list) else ()
    return Declared(frozenset(names), tool_ids)


def client_tool_name(tool: Any) -> str | None:
    """The name of a client tool's config; None for another kind of tool or no name."""
    if not isinstance(tool, Mapping) or tool.get("type") != "client":
        return None
    name = tool.get("name")
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class Comparison:
    """Built-in tools the agent does not declare, and client tools it declares the box lacks."""

    missing: tuple[str, ...]
    unknown: tuple[str, ...]


def compare(builtin: Iterable[str], declared: Iterable[str]) -> Comparison:
    have, told = set(builtin), set(declared)
    return Comparison(tuple(sorted(have - told)), tuple(sorted(told - have)))


def _config_for_tools(path: str) -> Config:
    """The config at `path`; the defaults when there is none (a fresh box needs no agent to
    print its tools). An invalid file raises ConfigError: the tool list follows the config."""
    from voicebox import config

    if not Path(path).exists():
        return Config()
    return config.load(path)


def main_tools(args: argparse.Namespace) -> int:
    """`voicebox tools [--config PATH]`: the built-in client tools' definitions as a JSON array."""
    try:
        cfg = _config_for_tools(args.config)
    except ConfigError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    sys.stdout.write(json.dumps(definitions(cfg), indent=2) + "\n")
    return 0
