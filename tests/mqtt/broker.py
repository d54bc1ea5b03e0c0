"""A real mosquitto on 127.0.0.1 for the tests: a plain anonymous listener, one with a password
file, and a TLS one with a CA the tests make (openssl); plus a subscriber that records."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

USER, PASSWORD = "voicebox", "broker-pass-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for localhost/127.0.0.1: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    cert, key, csr = directory / "server.crt", directory / "server.key", directory / "server.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=voicebox test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext)  # fmt: skip
    return ca, cert, key


@dataclass
class Broker:
    """mosquitto with three listeners; start/stop/kill keep the same ports."""

    directory: Path
    plain: int = field(default_factory=free_port)
    auth: int = field(default_factory=free_port)
    tls: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run scripts/bootstrap.sh")
        self.exe = exe
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_ca(self.directory / "tls")
        passwords = self.directory / "passwords"
        subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwords), USER, PASSWORD],
                       check=True, capture_output=True)  # fmt: skip
        passwords.chmod(0o600)
        self.conf = self.directory / "mosquitto.conf"
        self.log = self.directory / "mosquitto.log"
        self.conf.write_text(
            f"per_listener_settings true\nuser {getpass.getuser()}\npersistence false\n"
            f"log_dest file {self.log}\nlog_type all\n"
            f"listener {self.plain} 127.0.0.1\nallow_anonymous true\n"
            f"listener {self.auth} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"listener {self.tls} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"cafile {self.ca}\ncertfile {cert}\nkeyfile {key}\n"
        )

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        for port in (self.plain, self.auth, self.tls):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"mosquitto did not start: {err}")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@dataclass
class Recorder:
    """Every message seen on the topics subscribed, in order: (topic, payload, retained)."""

    messages: list[tuple[str, str, bool]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # perf_counter() at receipt, per message

    def latest(self, topic: str) -> str | None:
        for t, payload, _ in reversed(self.messages):
            if t == topic:
                return payload
        return None

    async def until_after(
        self, topic: str, payload: str, after: float, timeout: float = 5.0
    ) -> None:
        """A message on `topic` with `payload` received after perf_counter() `after`."""
        async with asyncio.timeout(timeout):
            while not any(  # noqa: ASYNC110 - polled
                t == topic and p == payload and at >= after
                for (t, p, _), at in zip(self.messages, self.times, strict=True)
            ):
                await asyncio.sleep(0.001)

    async def until(self, topic: str, payload: str | None = None, timeout: float = 15.0) -> str:
        """The first message on `topic` (with `payload`, if given) seen so far or later."""
        async with asyncio.timeout(timeout):
            while True:
                for t, p, _ in self.messages:
                    if t == topic and (payload is None or p == payload):
                        return p
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def recording(port: int, *topics: str, **client: object) -> AsyncIterator[Recorder]:
    """Subscribe to `topics` on the broker at 127.0.0.1:`port` and record in the background."""
    rec = Recorder()
    async with aiomqtt.Client("127.0.0.1", port, **client) as c:  # type: ignore[arg-type]
        for topic in topics:
            await c.subscribe(topic, qos=1)

        async def pump() -> None:
            async for msg in c.messages:
                raw = msg.payload
                text = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw or "")
                rec.times.append(time.perf_counter())
                rec.messages.append((str(msg.topic), text, bool(msg.retain)))

        task = asyncio.create_task(pump())
        try:
            yield rec
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def publish(
    port: int, topic: str, payload: str | bytes, retain: bool = False, **client: object
) -> None:
    async with aiomqtt.Client("127.0.0.1", port, **client) as c:  # type: ignore[arg-type]
        await c.publish(topic, payload, qos=1, retain=retain)
