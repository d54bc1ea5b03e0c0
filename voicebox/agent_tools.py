"""The client tools the box offers an agent: their definitions (`voicebox tools`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voicebox.config import EX_CONFIG, Config, ConfigError
from voicebox.convai.tools import GET_STATUS, GET_TIME, SET_VOLUME, ToolSpec


def builtin_specs(cfg: Config) -> list[ToolSpec]:
    """The daemon's built-in client tools with this config, by name."""
    specs = [GET_TIME, SET_VOLUME, GET_STATUS]
    # timers: added with voicebox/timers
    return sorted(specs, key=lambda s: s.name)


def definitions(cfg: Config) -> list[dict[str, Any]]:
    """Each built-in tool as the agents platform takes a client tool."""
    return [spec.definition() for spec in builtin_specs(cfg)]


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
