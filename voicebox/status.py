"""The daemon's local status: a Unix socket, the `voicebox status` command, a Prometheus textfile.

Protocol: a client connects to the socket (mode 0600, in the runtime directory, never on the
network: the daemon's user and root only) and may send one line, a command, then shuts its side
down; the daemon answers one JSON object and a newline, then closes. No line (an end of file, or
nothing within COMMAND_WAIT_S: a client that only reads) or `status` is the snapshot; the
daemon's other commands (`mute`, `unmute`, `volume 40`, `timers`, `timers cancel pasta`: a name,
then what follows the first space as its argument) answer what they did, an unknown one
{"error": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import re
import socket
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from voicebox.logs import event
from voicebox.state import State

log = logging.getLogger(__name__)

SOCKET_NAME = "status.sock"
FALLBACK_SOCKET = Path("/run/voicebox") / SOCKET_NAME
EXIT_NOT_RUNNING = 3  # like `systemctl status` of an inactive unit
EXIT_UNKNOWN = 4

Snapshot = Callable[[], dict[str, Any]]
Command = Callable[[str], dict[str, Any]]  # the argument ("" for none) -> the answer
COMMAND_WAIT_S = 0.5  # a client that sends no line gets the snapshot after this
COMMAND_MAX = 64  # bytes of one command line


def _snapshot_json(snapshot: Snapshot) -> bytes:
    try:
        data = snapshot()
    except Exception as exc:  # a snapshot bug must not break the socket
        data = {"error": f"snapshot failed: {type(exc).__name__}: {exc}"}
    return json.dumps(data, default=str, allow_nan=False, separators=(",", ":")).encode() + b"\n"


class StatusServer:
    """Serves the daemon's snapshot to local clients on a Unix socket."""

    def __init__(
        self, path: Path, snapshot: Snapshot, commands: dict[str, Command] | None = None
    ) -> None:
        self.path = Path(path)
        self._snapshot = snapshot
        self._commands = dict(commands or {})
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        """Listen at `path` (mode 0600), replacing a stale socket; failures are logged."""
        if self._server is not None:
            return
        if await _answers(self.path):
            event(log, "status.socket_in_use", logging.ERROR, path=self.path)
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            sock.bind(str(tmp))
            os.chmod(tmp, 0o600)  # owner only, before the socket is reachable at its name
            os.replace(tmp, self.path)
            self._inode = self.path.stat().st_ino
            sock.listen(8)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            event(log, "status.unavailable", logging.WARNING, path=self.path, error=str(exc))
            return
        event(log, "status.listening", logging.DEBUG, path=self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), COMMAND_WAIT_S)
            except (TimeoutError, ValueError):  # nothing sent, or a line over the limit
                line = b""
            command = line[:COMMAND_MAX].decode("ascii", "replace").strip()
            if command in ("", "status"):
                writer.write(_snapshot_json(self._snapshot))
            else:
                name, _, argument = command.partition(" ")
                handler = self._command(name)
                writer.write(_snapshot_json(lambda: handler(argument.strip())))
            await asyncio.wait_for(writer.drain(), 5.0)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _command(self, name: str) -> Command:
        handler = self._commands.get(name)
        if handler is None:
            event(log, "status.unknown_command", logging.WARNING, command=name[:COMMAND_MAX])
            known = ", ".join(["status", *self._commands])
            return lambda _: {"error": f"unknown command {name!r} (known: {known})"}
        return handler

    async def stop(self) -> None:
        """Stop listening and remove the socket (only if it is still ours)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()


async def _answers(path: Path) -> bool:
    """True if a live server accepts connections at `path`."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


# --- `voicebox status` -----------------------------------------------------------------------


def _socket_path(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    from voicebox import config

    try:
        cfg = config.load(args.config)
    except config.ConfigError:
        return FALLBACK_SOCKET
    return Path(cfg.paths.runtime_dir) / SOCKET_NAME


def read_status(path: Path, timeout_s: float = 5.0, command: str = "status") -> dict[str, Any]:
    """The daemon's answer to `command` (the snapshot by default); raises OSError (not running,
    no access) or ValueError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        if command != "status":  # the snapshot is asked for with no line, as before commands
            sock.sendall(command.encode("ascii") + b"\n")
        sock.shutdown(socket.SHUT_WR)  # the end of the request: the daemon answers at once
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = json.loads(b"".join(chunks))
    if not isinstance(data, dict):
        raise ValueError("status is not a JSON object")
    return data


def main_status(args: argparse.Namespace) -> int:
    command = getattr(args, "command", "status")
    if command != "status":
        return _main_command(args, command)
    path = _socket_path(args)
    try:
        snap = read_status(path)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"voicebox is not running (no daemon at {path})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"cannot read {path}: permission denied (try sudo)", file=sys.stderr)
        return EXIT_UNKNOWN
    except (OSError, ValueError) as exc:
        print(f"cannot read the status from {path}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        print(json.dumps(snap, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render(snap))
    return 0


def ask(args: argparse.Namespace, line: str) -> dict[str, Any] | int:
    """Send one command line to the running daemon: its answer, or the exit code after one
    line on stderr saying why there is none (not running, no access, an error answer)."""
    path = _socket_path(args)
    name = line.split(" ", 1)[0]
    try:
        answer = read_status(path, command=line)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"voicebox is not running (no daemon at {path})", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except PermissionError:
        print(f"cannot reach {path}: permission denied (try sudo)", file=sys.stderr)
        return EXIT_UNKNOWN
    except (OSError, ValueError) as exc:
        print(f"cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    if "error" in answer:
        print(f"voicebox {name}: {answer['error']}", file=sys.stderr)
        return EXIT_UNKNOWN
    return answer


def _main_command(args: argparse.Namespace, command: str) -> int:
    """`voicebox mute` / `voicebox unmute`: one line saying what the daemon did."""
    answer = ask(args, command)
    if isinstance(answer, int):
        return answer
    print(f"voicebox {answer.get('state', '?')} (muted: {_value('muted', answer.get('muted'))})")
    return 0


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds != seconds:
        return str(seconds)
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{seconds:.1f}s" if isinstance(seconds, float) else f"{s}s"


def _value(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_s") and isinstance(value, int | float):
        return _duration(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _leaves(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def render(snap: dict[str, Any]) -> str:
    """The snapshot as text: a headline, then each section's fields (whatever keys are present)."""
    head = f"voicebox {snap.get('version', '?')}: {snap.get('state', 'unknown')}"
    if "uptime_s" in snap:
        head += f", up {_duration(snap['uptime_s'])}"
    lines = [head]
    scalars = {k: v for k, v in snap.items() if not isinstance(v, dict)}
    for key in ("version", "state", "uptime_s"):
        scalars.pop(key, None)
    sections = {k: v for k, v in snap.items() if isinstance(v, dict)}
    if scalars:
        sections = {"": scalars, **sections}
    for title, section in sections.items():
        rows = list(_leaves(section))
        if not rows:
            continue
        if title:
            lines.append(f"{title.replace('_', ' ')}:")
        width = max(len(k) for k, _ in rows)
        lines += [f"  {k:<{width}}  {_value(k, v)}" for k, v in rows]
    return "\n".join(lines) + "\n"


# --- Prometheus textfile -----------------------------------------------------------------------

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _metric_name(*parts: str) -> str:
    return _NAME_BAD.sub("_", "_".join(("voicebox", *parts))).lower()


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _sample(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_text(snap: dict[str, Any]) -> str:
    """The snapshot in node_exporter textfile format: one metric per numeric leaf."""
    out: list[str] = []
    if "version" in snap:
        out += [
            "# HELP voicebox_info voicebox version",
            "# TYPE voicebox_info gauge",
            f'voicebox_info{{version="{_label(snap["version"])}"}} 1',
        ]
    if "state" in snap:
        current = str(snap["state"])
        states = [s.value for s in State]
        if current not in states:
            states.append(current)
        out += ["# HELP voicebox_state daemon state (1 for the current one)"]
        out += ["# TYPE voicebox_state gauge"]
        out += [f'voicebox_state{{state="{_label(s)}"}} {int(s == current)}' for s in states]
    seen: set[str] = set()
    for path, value in _leaves({k: v for k, v in snap.items() if k not in ("version", "state")}):
        number = _number(value)
        if number is None:
            continue
        parts = path.split(".")
        name = _metric_name(*parts)
        if name in seen:
            continue
        seen.add(name)
        kind = "counter" if parts[0] == "counters" else "gauge"
        out += [f"# HELP {name} {path}", f"# TYPE {name} {kind}", f"{name} {_sample(number)}"]
    return "\n".join(out) + "\n"


class MetricsFile:
    """A Prometheus textfile (node_exporter's textfile collector), rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._failing = False

    def write(self, snapshot: dict[str, Any]) -> None:
        """Write tmp + rename, mode 0644 so node_exporter can read it; errors are logged once."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(metrics_text(snapshot), encoding="utf-8")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._failing:
                event(log, "metrics.write_failed", logging.WARNING, path=self.path, error=str(exc))
            self._failing = True
            return
        self._failing = False


async def write_metrics_periodically(
    metrics: MetricsFile, snapshot: Snapshot, interval_s: float
) -> None:
    """Rewrite the metrics file every `interval_s` until cancelled."""
    while True:
        try:
            snap = snapshot()
        except Exception as exc:
            event(log, "metrics.snapshot_failed", logging.WARNING, error=repr(exc))
        else:
            metrics.write(snap)
        await asyncio.sleep(interval_s)
