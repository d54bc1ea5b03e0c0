"""The `voicebox` command: parses arguments and dispatches to the module that owns each command."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from voicebox import __version__, extras
from voicebox.config import DEFAULT_PATH, EX_CONFIG, ConfigError

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141, as for `yes | head`

# command -> "module:function"; each function takes the parsed arguments and returns an exit code.
COMMANDS = {
    "run": "voicebox.daemon.run:main_run",
    "check-config": "voicebox.command_config:main_check_config",
    "devices": "voicebox.audio.devices:main_devices",
    "simulate": "voicebox.simulator.server:main_simulate",
    "status": "voicebox.status:main_status",
    "mute": "voicebox.status:main_status",
    "unmute": "voicebox.status:main_status",
    "volume": "voicebox.volume:main_volume",
    "timers": "voicebox.timers.command:main_timers",
    "say": "voicebox.tts:main_say",
    "announcements": "voicebox.announcements:main_announcements",
    "phone": "voicebox.phone.server:main_phone",
    "call": "voicebox.phone.server:main_call",
    "doctor": "voicebox.doctor.run:main_doctor",
    "setup": "voicebox.setup:main_setup",
    "tools": "voicebox.agent_tools:main_tools",
}


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=str(DEFAULT_PATH), metavar="PATH", help=f"default {DEFAULT_PATH}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicebox",
        description="A voice appliance daemon for ElevenLabs Conversational AI agents "
        "(Raspberry Pi 5: microphone, speaker, push button). Config: /etc/voicebox/config.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"voicebox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the daemon")
    _add_config(p)
    p.add_argument(
        "--simulate-button",
        action="store_true",
        help="no GPIO: Enter on stdin presses/releases the button",
    )

    p = sub.add_parser("check-config", help="validate the config and print it, redacted")
    _add_config(p)

    sub.add_parser("devices", help="list audio input and output devices")

    from voicebox.simulator import faults

    p = sub.add_parser(
        "simulate",
        help="run the local agent simulator",
        epilog=f"--fault grammar:\n{faults.GRAMMAR}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-key", default=None, help="require this key for signed URLs and TTS")
    p.add_argument(
        "--output-format", default="pcm_16000", help="agent_output_audio_format to announce"
    )
    p.add_argument(
        "--input-format", default="pcm_16000", help="user_input_audio_format to announce"
    )
    p.add_argument("--max-duration-s", type=float, default=600.0, help="conversation duration cap")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="N:KIND[:ARG]",
        help="fault on the Nth connection, e.g. 2:close:1012 (repeatable)",
    )
    p.add_argument(
        "--chaos",
        default=None,
        metavar="SEED[:FAULTS[:MINUTES]]",
        help="seeded random faults of every kind over the run (default 20 in 10 minutes)",
    )
    p.add_argument(
        "--chaos-kinds",
        default=None,
        metavar="KIND,...",
        help="only these chaos kinds (e.g. silent,drop); default all",
    )

    p = sub.add_parser("status", help="show the running daemon's status")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--socket", default=None, help="status socket path (default from config)")

    for name, what in (("mute", "privacy mute: no session, no wake word, no audio leaves the box"),
                       ("unmute", "end the privacy mute")):  # fmt: skip
        p = sub.add_parser(name, help=what)
        _add_config(p)
        p.add_argument("--socket", default=None, help="status socket path (default from config)")

    p = sub.add_parser("volume", help="show or set the output level 0-100 (kept across restarts)")
    _add_config(p)
    p.add_argument("level", nargs="?", type=int, default=None, help="the new level, 0-100")
    p.add_argument("--socket", default=None, help="status socket path (default from config)")

    p = sub.add_parser("timers", help="list the timers and alarms, cancel one, or stop a ring")
    _add_config(p)
    p.add_argument("action", nargs="?", choices=["cancel", "stop"], default=None)
    p.add_argument("name", nargs="*", help="cancel: the timer's name (none: the only one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--socket", default=None, help="status socket path (default from config)")

    p = sub.add_parser("say", help="speak a phrase with text-to-speech")
    _add_config(p)
    p.add_argument("text")
    p.add_argument("--out", default=None, metavar="FILE.wav", help="write a WAV instead")

    p = sub.add_parser("announcements", help="manage the spoken announcements")
    _add_config(p)
    p.add_argument(
        "--prefetch", action="store_true", help="synthesise and cache every configured phrase"
    )

    p = sub.add_parser("phone", help="serve phone calls to the agent (Twilio Media Streams)")
    _add_config(p)

    p = sub.add_parser("call", help="place an outbound phone call to the agent through Twilio")
    _add_config(p)
    p.add_argument("number", help="the number to call, E.164 (+15551234567)")

    _add_doctor(sub)
    _add_setup(sub)

    p = sub.add_parser(
        "tools",
        help="print the built-in client tools' definitions (JSON) to declare on the agent",
    )
    p.add_argument(
        "--config",
        default=str(DEFAULT_PATH),
        metavar="PATH",
        help=f"default {DEFAULT_PATH}; none needed: without the file the defaults are used",
    )
    return parser


def _add_doctor(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check everything the appliance needs; one line per check")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="do not play the speaker test tone")
    p.add_argument("--button", action="store_true", help="ask for a button press (waits 10 s)")
    p.add_argument("--root", default="/", metavar="DIR", help="check the system installed in DIR")


def _add_setup(sub: Any) -> None:
    p = sub.add_parser("setup", help="first-run setup: devices, agent, key, button; writes config")
    _add_config(p)
    p.add_argument("--root", default="/", metavar="DIR", help="set up the system installed in DIR")
    p.add_argument("--non-interactive", action="store_true", help="take every answer from flags")
    p.add_argument("--agent-id", default=None)
    p.add_argument("--api-key-file", default=None, metavar="FILE", help="read the API key here")
    p.add_argument("--input-device", default=None, help="name substring or index")
    p.add_argument("--output-device", default=None, help="name substring or index")
    p.add_argument("--button-pin", default=None, help="BCM pin, or none")
    p.add_argument("--led-pin", default=None, help="BCM pin, or none")
    p.add_argument("--mute-pin", default=None, help="BCM pin of a mute switch or button, or none")
    p.add_argument("--mute-kind", default=None, choices=("switch", "button"))
    p.add_argument(
        "--long-press", default=None, choices=("end", "mute"), help="what a hold of the button does"
    )
    p.add_argument("--mode", default=None, choices=("push_to_talk", "wake_word", "always_on"))
    p.add_argument(
        "--wake-model", default=None, help="okay_nabu, hey_jarvis, hey_mycroft, alexa, or a path"
    )
    p.add_argument("--api-base", default=None, help="REST base (default from the config)")
    p.add_argument("--no-check", action="store_true", help="do not check the key and agent")


def _resolve(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    fn: Callable[[argparse.Namespace], int] = getattr(module, func)
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # an optional extra's package (twilio, aiohttp, ruamel) is imported here, by its command
        handler = _resolve(COMMANDS[args.command])
        code = handler(args)
        sys.stdout.flush()  # inside the try: a reader gone by exit time is a broken pipe too
        return code
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        extra = extras.missing_extra(exc)
        if extra is None:
            raise
        print(extras.message(args.command, extra), file=sys.stderr)
        return extras.EX_UNAVAILABLE
    except BrokenPipeError:
        # the reader went away (voicebox doctor | head): stop quietly with the status a shell
        # shows for a tool SIGPIPE ended; stdout to /dev/null so the exit-time flush cannot fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:  # a key file read after the config (run, phone): one line each
        for problem in exc.problems:
            print(f"voicebox {args.command}: {problem}", file=sys.stderr)
        return EX_CONFIG
