"""sd_notify messages to systemd (READY, STATUS, RELOADING, STOPPING) and the health-gated watchdog.

Messages go through systemd-python's `systemd.daemon.notify`. Without $NOTIFY_SOCKET (a foreground
run) every call is a no-op; a socket that has gone away is logged once and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping

from voicebox.logs import event

log = logging.getLogger(__name__)

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - systemd-python is a dependency; keep running without it
    _sd_daemon = None


class Notifier:
    """Sends sd_notify(3) messages to the service manager, if there is one.

    `environ` is where NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID are read (default os.environ);
    libsystemd itself sends to the process's $NOTIFY_SOCKET.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env: Mapping[str, str] = os.environ if environ is None else environ
        self._failed = False

    def _send(self, **fields: object) -> None:
        if _sd_daemon is None or not self._env.get("NOTIFY_SOCKET"):
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            _sd_daemon.notify(message)  # never unset_environment=True: it stops later pings
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
