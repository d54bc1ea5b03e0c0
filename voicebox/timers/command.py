"""`voicebox timers [cancel NAME | stop]`: the running daemon's timers, over the status socket."""

from __future__ import annotations

import argparse
import json
from typing import Any

from voicebox.timers.book import say_duration


def _line(t: dict[str, Any]) -> str:
    when = f"rings at {t['due']}, in {say_duration(float(t['in_s']))}"
    return f"{t['kind']:<6} {t['name']:<24} {when}"


def main_timers(args: argparse.Namespace) -> int:
    from voicebox.status import ask

    line = "timers"
    if args.action == "cancel":
        line = f"timers cancel {' '.join(args.name)}".rstrip()
    elif args.action == "stop":
        line = "timers stop"
    answer = ask(args, line)
    if isinstance(answer, int):
        return answer
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    if "said" in answer:
        print(answer["said"])
    if args.action == "stop":
        print("stopped the ring" if answer.get("stopped") else "nothing was ringing")
    for name in answer.get("ringing") or []:
        print(f"ringing {name}")
    timers = answer.get("timers") or []
    for t in timers:
        print(_line(t))
    if not timers and args.action is None:
        print("no timers or alarms are set")
    return 0
