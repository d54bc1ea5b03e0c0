"""sd_notify messages to systemd (READY, STATUS, RELOADING, STOPPING) and the health-gated watchdog.

Messages are KEY=VALUE lines sent as one datagram to $NOTIFY_SOCKET ('@' for the abstract
namespace), sd_notify(3)'s wire format, from a non-blocking socket of our own: libsystemd's
sd_notify blocks while the manager's queue is full (net.unix.max_dgram_qlen, 10 here), which froze
the event loop, audio included, behind a manager that stopped reading. A message that does not
fit is dropped and counted (`dropped`); without $NOTIFY_SOCKET (a foreground run) every call is a
no-op; a socket that has gone away is logged once and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from voicebox.logs import event

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify(3) messages to the service manager, if there is one.

    `environ` is where NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID are read (default os.environ).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if environ is None else environ
        self._failed = False
        self._sock: socket.socket | None = None
        self.dropped = 0  # messages the manager's full queue had no room for

    def _send(self, **fields: object) -> None:
        address = self._env.get("NOTIFY_SOCKET")
        if not address:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
        except BlockingIOError:
            self.dropped += 1
            if self.dropped == 1:
                event(log, "sd_notify.busy", logging.WARNING, reason="the manager's queue is full")
            return
        except OSError as exc:
            if not self._failed:
                self._failed = True
                event(log, "sd_notify.failed", logging.WARNING, error=str(exc))
            return
        self._failed = False

    def ready(self, status: str) -> None:
        self._send(READY=1, STATUS=_one_line(status))

    def status(self, text: str) -> None:
        self._send(STATUS=_one_line(text))

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> None:
        self._send(STOPPING=1)

    def watchdog(self) -> None:
        self._send(WATCHDOG=1)

    @property
    def watchdog_interval_s(self) -> float | None:
        """The watchdog period systemd asked for, if it is meant for this process."""
        pid = self._env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None
        try:
            usec = int(self._env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        return usec / 1e6 if usec > 0 else None


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def feed_watchdog(notifier: Notifier, healthy: Callable[[], bool], interval_s: float) -> None:
    """Send WATCHDOG=1 every interval/2 while the loop makes progress and `healthy()` is true.

    A blocked loop (lag of more than a quarter interval) or a failed health check skips the ping
    and logs one line per change, so systemd restarts a wedged daemon. Runs until cancelled.
    """
    loop = asyncio.get_running_loop()
    period = interval_s / 2
    was_ok = True
    while True:
        start = loop.time()
        await asyncio.sleep(period)
        lag = loop.time() - start - period
        if lag >= period / 2:
            ok, reason = False, "loop_blocked"
        else:
            try:
                ok, reason = bool(healthy()), "unhealthy"
            except Exception as exc:  # a broken probe is an unhealthy daemon, not a dead task
                ok, reason = False, f"health_check_error:{type(exc).__name__}"
        if ok:
            notifier.watchdog()
            if not was_ok:
                event(log, "watchdog.resumed")
        elif was_ok:
            event(log, "watchdog.withheld", logging.ERROR, reason=reason, lag_s=round(lag, 3))
        was_ok = ok
