"""`voicebox run`: load the config and the key, refuse what cannot start (exit 78), run the
daemon until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
from pathlib import Path

from voicebox import config, logs
from voicebox.config import EX_CONFIG, Config, ConfigError, Secret
from voicebox.daemon.core import Daemon

log = logging.getLogger("voicebox.daemon")


def _check_startable(cfg: Config, api_key: Secret | None) -> list[str]:
    problems = []
    if not cfg.agent.agent_id:
        problems.append("agent.agent_id: required to run (the id of your ElevenLabs agent)")
    if cfg.agent.requires_auth and api_key is None:
        problems.append(
            "agent.requires_auth is true but no API key was found: set the systemd credential "
            f"'{config.CREDENTIAL_NAME}', ${config.API_KEY_ENV}, or agent.api_key_file"
        )
    return problems


def main_run(args: argparse.Namespace) -> int:
    logs.setup("info")
    path = Path(args.config)
    try:
        cfg = config.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    logs.setup(cfg.logging.level)
    api_key = config.load_api_key(cfg)
    if api_key is not None:
        logs.register_secret(api_key.reveal())
    problems = _check_startable(cfg, api_key)
    if problems:
        for problem in problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    faulthandler.enable()  # a watchdog SIGABRT dumps every thread's stack into the journal
    daemon = Daemon(cfg, path, api_key, bool(getattr(args, "simulate_button", False)))
    return asyncio.run(daemon.run())
