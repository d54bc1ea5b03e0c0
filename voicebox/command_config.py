"""The config and API key a one-shot command runs with (say, announcements, check-config...).

`voicebox check-config` is this load, printed redacted. Command modules import this, never
voicebox.cli: the cli dispatches to them, not the other way round.
"""

from __future__ import annotations

import argparse
import sys

from voicebox import config, logs
from voicebox.config import EX_CONFIG, Config, Secret


def load_for_command(path: str) -> tuple[Config, Secret | None]:
    """Config and API key for a one-shot command: quiet logging, the key registered as a secret.
    An invalid config prints its problems and exits 78 (EX_CONFIG)."""
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    logs.setup("debug" if cfg.logging.level == "debug" else "warning")
    key = config.load_api_key(cfg)
    if key is not None:
        logs.register_secret(key.reveal())
    return cfg, key


def main_check_config(args: argparse.Namespace) -> int:
    """`voicebox check-config`: the validated config, redacted, on stdout."""
    cfg, key = load_for_command(args.config)
    sys.stdout.write(config.dump(cfg, key))
    return 0
