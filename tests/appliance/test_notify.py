"""sd_notify messages and the watchdog, received on a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebox.systemd import Notifier, feed_watchdog

HANG_GUARD_S = 10.0


class NotifySocket:
    """systemd's side of NOTIFY_SOCKET: a datagram socket that collects messages."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    async def recv(self) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), HANG_GUARD_S)
        return dict(line.split("=", 1) for line in data.decode().splitlines())

    def drain(self) -> list[dict[str, str]]:
        out = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return out
            out.append(dict(line.split("=", 1) for line in data.decode().splitlines()))


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    with tempfile.TemporaryDirectory(prefix="vbn") as d:  # short: AF_UNIX paths are <108 bytes
        path = os.path.join(d, "notify")
        srv = NotifySocket(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield srv
        srv.sock.close()


@pytest.mark.asyncio
async def test_lifecycle_messages(notify_socket: NotifySocket) -> None:
    n = Notifier()
    n.ready("idle, waiting for the button")
    assert await notify_socket.recv() == {"READY": "1", "STATUS": "idle, waiting for the button"}
    n.status("connected conv=conv_1\nsecond line")
    assert await notify_socket.recv() == {"STATUS": "connected conv=conv_1 second line"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    msg = await notify_socket.recv()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after
    n.stopping()
    assert await notify_socket.recv() == {"STOPPING": "1"}
    n.watchdog()
    assert await notify_socket.recv() == {"WATCHDOG": "1"}


@pytest.mark.asyncio
async def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"voicebox-test-{os.getpid()}-{id(monkeypatch)}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind("\0" + name)
    srv.settimeout(HANG_GUARD_S)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        Notifier().ready("up")
        assert srv.recv(4096).decode().splitlines() == ["READY=1", "STATUS=up"]
    finally:
        srv.close()


def test_no_socket_is_a_no_op() -> None:
    n = Notifier(environ={})
    n.ready("x")
    n.watchdog()
    assert n.watchdog_interval_s is None


def test_a_vanished_socket_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    n = Notifier()
    with caplog.at_level(logging.WARNING, logger="voicebox.systemd"):
        n.ready("x")
        n.watchdog()
        n.stopping()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["sd_notify.failed"]


def test_watchdog_interval_is_ours_only() -> None:
    mine = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=mine).watchdog_interval_s == pytest.approx(0.2)
    assert Notifier(environ={"WATCHDOG_USEC": "30000000"}).watchdog_interval_s == 30.0
    other = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier(environ=other).watchdog_interval_s is None
    assert Notifier(environ={"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    assert Notifier(environ={"WATCHDOG_USEC": "0"}).watchdog_interval_s is None


class Health:
    """healthy() for feed_watchdog: counts calls so tests can wait for iterations, not time."""

    def __init__(self) -> None:
        self.ok = True
        self.calls = 0
        self.changed = asyncio.Event()
        self.wait_for = 0

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls >= self.wait_for:
            self.changed.set()
        return self.ok

    async def iterations(self, n: int) -> None:
        self.wait_for = self.calls + n
        self.changed.clear()
        await asyncio.wait_for(self.changed.wait(), HANG_GUARD_S)


@pytest.mark.asyncio
async def test_watchdog_feeds_while_healthy_and_stops_when_not(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    n = Notifier()
    interval = n.watchdog_interval_s
    assert interval == pytest.approx(0.2)
    health = Health()
    task = asyncio.create_task(feed_watchdog(n, health, interval))
    try:
        for _ in range(3):
            assert await notify_socket.recv() == {"WATCHDOG": "1"}
        health.ok = False
        await health.iterations(1)
        notify_socket.drain()  # pings sent before the flip
        await health.iterations(4)
        assert notify_socket.drain() == []
        health.ok = True
        assert await notify_socket.recv() == {"WATCHDOG": "1"}
        assert not task.done()
    finally:
        task.cancel()


@pytest.mark.asyncio
async def test_watchdog_withheld_when_the_loop_is_blocked(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    order: list[str] = []

    class RecordingNotifier(Notifier):
        def watchdog(self) -> None:
            order.append("ping")
            super().watchdog()

    class OrderHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            order.append(record.getMessage().split()[0])

    caplog.set_level(logging.INFO, logger="voicebox.systemd")
    handler = OrderHandler()
    logging.getLogger("voicebox.systemd").addHandler(handler)
    health = Health()
    task = asyncio.create_task(feed_watchdog(RecordingNotifier(), health, 0.2))
    try:
        await notify_socket.recv()
        order.append("block")
        time.sleep(0.6)  # noqa: ASYNC251 - the wedged loop: three watchdog periods
        order.append("unblock")
        await health.iterations(2)
        after = order[order.index("unblock") + 1 :]
        assert after[0] == "watchdog.withheld", order
        assert "ping" in after  # feeding resumes once the loop runs again
        assert "watchdog.resumed" in after
        assert notify_socket.drain()
    finally:
        task.cancel()
        logging.getLogger("voicebox.systemd").removeHandler(handler)
    assert any("reason=loop_blocked" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_a_raising_health_check_is_unhealthy(notify_socket: NotifySocket) -> None:
    calls = 0
    checked = asyncio.Event()

    def broken() -> bool:
        nonlocal calls
        calls += 1
        if calls >= 3:
            checked.set()
        raise RuntimeError("probe bug")

    task = asyncio.create_task(feed_watchdog(Notifier(), broken, 0.05))
    try:
        await asyncio.wait_for(checked.wait(), HANG_GUARD_S)
        assert notify_socket.drain() == []
        assert not task.done()
    finally:
        task.cancel()


def test_a_manager_that_stops_reading_never_blocks_the_sender(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    """The manager's queue holds net.unix.max_dgram_qlen datagrams; libsystemd's sd_notify then
    blocked, and the daemon's event loop with it. Messages beyond it are dropped and counted."""
    qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    n = Notifier()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="voicebox.systemd"):
        for i in range(qlen + 50):
            n.status(f"state {i}")
    assert time.monotonic() - started < HANG_GUARD_S  # a guard against a hang, not a timing
    assert n.dropped >= 40  # the queue takes about qlen
    assert len(notify_socket.drain()) + n.dropped == qlen + 50
    assert sum("sd_notify.busy" in r.getMessage() for r in caplog.records) == 1
