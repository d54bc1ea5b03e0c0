"""`voicebox doctor`: run every check in order, print one line each (or JSON), exit 0/1."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from voicebox import config
from voicebox.config import API_KEY_ENV, CREDENTIAL_NAME, Config, Secret
from voicebox.doctor import host as h
from voicebox.doctor.audio import check_audio
from voicebox.doctor.mqtt import check_mqtt, find_password
from voicebox.doctor.mute import check_mute
from voicebox.doctor.network import check_network
from voicebox.doctor.report import Check, as_json, exit_code, fail, ok, summary, warn
from voicebox.doctor.service import check_service
from voicebox.doctor.usage import check_usage
from voicebox.doctor.wake import check_wake

DEADLINE_S = 60.0  # per check: two REST requests, a mic and speaker test, a 10 s button wait
KEY_FIX = "save the key alone as UTF-8 text, or store it again: sudo voicebox setup"


def find_key(
    cfg: Config, host: h.Host, environ: Mapping[str, str] | None = None
) -> tuple[Secret | None, str]:
    """The API key the daemon would use and where it came from; else the installed credential.
    A key file that is not UTF-8 raises config.NotUtf8Error."""
    env = os.environ if environ is None else environ
    key = config.load_api_key(cfg, env)
    if key:
        cred_dir = env.get("CREDENTIALS_DIRECTORY")
        if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).is_file():
            return key, "the systemd credential"
        if env.get(API_KEY_ENV, "").strip():
            return key, f"${API_KEY_ENV}"
        return key, f"agent.api_key_file {cfg.agent.api_key_file}"
    try:
        value = config.read_secret(host.credential)
    except OSError:
        return None, ""
    return (Secret(value), f"/etc/voicebox/credentials/{CREDENTIAL_NAME}") if value else (None, "")


def load_config(path: str) -> tuple[Config | None, Check]:
    """The config and its verdict; the defaults when there is no file, None when it is invalid."""
    try:
        cfg = config.load(path)
    except config.ConfigError as exc:
        missing = any(p.endswith("no such file") for p in exc.problems)
        fix = (
            "create it: sudo voicebox setup"
            if missing
            else f"correct the lines named; check again with voicebox check-config --config {path}"
        )
        verdict = fail("config", "; ".join(exc.problems), fix)
        # no file at all: the rest runs on the defaults (what setup starts from); a broken file
        # would only mislead the other checks
        return (Config() if missing else None), verdict
    return cfg, ok("config", f"{path} is valid")


def checks(
    config_path: str,
    host: h.Host,
    *,
    quiet: bool = False,
    button: bool = False,
    pin_factory: Any = None,
    say: Callable[[str], None] = print,
    environ: Mapping[str, str] | None = None,
    deadline_s: float = DEADLINE_S,
) -> Iterator[Check]:
    """Every check, in the order a person would fix things; each within `deadline_s`, and one
    that raises or hangs is reported as failing while the others still run."""

    def run(name: str, fn: Callable[[], Check | Iterable[Check]]) -> list[Check]:
        return guarded(name, fn, deadline_s)

    cfg, verdict = load_config(config_path)
    yield verdict
    if cfg is None:
        yield warn(
            "skipped",
            "the service, network, audio, button and cache checks need a valid config",
            "fix the config first",
        )
    else:
        c = cfg
        try:
            key, source = find_key(c, host, environ)
        except config.NotUtf8Error as exc:
            yield fail("api key", "; ".join(exc.problems), KEY_FIX)
            found = run("service", lambda: check_service(c, None, ""))
            yield from (check for check in found if check.name != "api key")
        else:
            yield from run("service", lambda: check_service(c, key, source))
        yield from run("network", lambda: check_network(c.agent.api_base))
        if c.mqtt.enabled:
            yield from run("mqtt", lambda: check_mqtt(c, find_password(environ, host.root)))
        if host.unit_active():
            yield warn(
                "audio",
                "voicebox is running and holds the sound devices: they are not opened",
                "to test the mic and speaker too: sudo systemctl stop voicebox; voicebox doctor",
            )
        else:
            yield from run("audio", lambda: check_audio(c.audio, quiet))
        if c.conversation.mode == "wake_word":
            yield from run("wake word", lambda: check_wake(c))
    yield from run("permissions", lambda: h.check_permissions(host))
    yield from run("lgpio", lambda: h.check_lgpio(host))
    if cfg is not None and not (host.unit_active() and cfg.gpio.button.pin is not None):
        c = cfg
        yield from run("button", lambda: h.check_button(c, pin_factory, press=button, say=say))
    elif cfg is not None:
        yield warn(
            "button",
            "voicebox is running and holds the button pin: not read",
            "to test the button too: sudo systemctl stop voicebox; voicebox doctor --button",
        )
    if cfg is not None:
        c, free = cfg, not host.unit_active()
        yield from run("mute", lambda: check_mute(c, pin_factory, read_pin=free))
    yield from run("systemd", lambda: h.check_systemd(host))
    yield from run("credential", lambda: h.check_credential(host))
    yield from run("journal", lambda: h.check_journal(host))
    if cfg is not None:
        c = cfg
        yield from run("announcements", lambda: h.check_cache(c, host))
        yield from run("free space", lambda: h.check_disk(c, host))
        yield from run("conversation time", lambda: check_usage(c))
    yield from run("temperature", lambda: h.check_temperature(host))
    yield from run("power", lambda: h.check_throttling(host))


class _Late(Exception):
    """The check outlived its deadline."""


def guarded(
    name: str, fn: Callable[[], Check | Iterable[Check]], deadline_s: float = DEADLINE_S
) -> list[Check]:
    """fn's checks, run in a thread: one that raises, or is not done within `deadline_s` (left
    behind, a daemon thread), is a failed check `name` that says so, never a traceback."""
    out: list[Check] = []
    error: list[Exception] = []

    def work() -> None:
        try:
            got = fn()
            out.extend([got] if isinstance(got, Check) else got)
        except Exception as exc:
            error.append(exc)

    thread = threading.Thread(target=work, name=f"doctor {name}", daemon=True)
    thread.start()
    thread.join(deadline_s)
    if thread.is_alive():
        return [
            fail(
                name,
                f"no result within {deadline_s:g} s: the check hangs",
                "run voicebox doctor again; if it hangs again, report this with its output",
            )
        ]
    if error:
        exc = error[0]
        return [
            fail(
                name,
                f"the check failed: {type(exc).__name__}: {exc}",
                "report this with the output of voicebox doctor",
            )
        ]
    return out


def main_doctor(args: argparse.Namespace) -> int:
    """`voicebox doctor [--config PATH] [--json] [--quiet] [--button] [--root DIR]`."""
    from voicebox import logs

    logs.setup("error")
    host = h.Host(root=Path(args.root))
    say: Callable[[str], None] = (lambda text: print(text, file=sys.stderr)) if args.json else print
    results: list[Check] = []
    for check in checks(args.config, host, quiet=args.quiet, button=args.button, say=say):
        results.append(check)
        if not args.json:
            print(check.line(), flush=True)
    if args.json:
        print(as_json(results))
    else:
        print(summary(results))
    return exit_code(results)
