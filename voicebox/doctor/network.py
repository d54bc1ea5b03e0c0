"""Network checks for agent.api_base: DNS, TCP, TLS, and the local clock against the Date header.

A Pi has no battery-backed clock: until NTP has run it may be days off, and past a certificate's
validity window every TLS handshake fails.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable

from voicebox.doctor.report import Check, fail, ok, warn
from voicebox.doctor.service import Unreachable, get_json

TIMEOUT_S = 5.0
CLOCK_WARN_S = 60.0
CLOCK_FAIL_S = 86400.0  # without a certificate to compare with: a day off breaks TLS somewhere
CLOCK_FIX = "enable time sync: sudo timedatectl set-ntp true (check: timedatectl status)"


def _endpoint(api_base: str) -> tuple[str, int, bool]:
    parts = urllib.parse.urlsplit(api_base)
    tls = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if tls else 80), tls


def check_network(api_base: str, now: Callable[[], float] = time.time) -> list[Check]:
    host, port, tls = _endpoint(api_base)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return [
            fail(
                "dns",
                f"{host}: {getattr(exc, 'strerror', None) or exc}",
                "check the network connection and /etc/resolv.conf (ping 1.1.1.1, resolvectl)",
            )
        ]
    addrs = sorted({str(i[4][0]) for i in infos})
    out = [ok("dns", f"{host} -> {', '.join(addrs[:3])}")]
    try:
        sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except OSError as exc:
        out.append(
            fail(
                "tcp",
                f"{host}:{port}: {exc.strerror or exc}",
                "check the network, a firewall or proxy; the service must be reachable on "
                f"port {port}",
            )
        )
        return out
    not_after: float | None = None
    not_before: float | None = None
    with sock:
        out.append(ok("tcp", f"{host}:{port} connected"))
        if tls:
            ctx = ssl.create_default_context()
            try:
                with ctx.wrap_socket(sock, server_hostname=host) as tsock:
                    cert = tsock.getpeercert() or {}
                    version = tsock.version()
            except ssl.SSLCertVerificationError as exc:
                why = exc.verify_message or str(exc)
                clocky = "not yet valid" in why or "expired" in why
                out.append(
                    fail(
                        "tls",
                        f"{host}: certificate not accepted: {why}",
                        CLOCK_FIX
                        if clocky
                        else "install ca-certificates; a proxy rewriting TLS is not supported",
                    )
                )
                return out
            except (ssl.SSLError, OSError) as exc:
                out.append(fail("tls", f"{host}: handshake failed: {exc}", "check the network"))
                return out
            nb, na = cert.get("notBefore"), cert.get("notAfter")
            not_before = ssl.cert_time_to_seconds(str(nb)) if nb else None
            not_after = ssl.cert_time_to_seconds(str(na)) if na else None
            out.append(ok("tls", f"{host}: {version}, certificate valid"))
        else:
            out.append(warn("tls", f"{api_base} is plain http", "use https for the real service"))
    out.append(_clock(api_base, now, not_before, not_after))
    return out


def _clock(
    api_base: str, now: Callable[[], float], not_before: float | None, not_after: float | None
) -> Check:
    try:
        answer = get_json(api_base.rstrip("/") + "/", None, TIMEOUT_S)
    except Unreachable as exc:
        return warn("clock", f"no answer to read the server's Date from: {exc}", CLOCK_FIX)
    date = answer.headers.get("date")
    if not date:
        return warn("clock", "the server sent no Date header", "check the clock: timedatectl")
    try:
        parsed = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError):  # a captive portal or a broken proxy answering
        return warn(
            "clock",
            f"the server's Date header is not a date: {date[:60]!r}",
            "check the clock: timedatectl; a captive portal or proxy may be answering",
        )
    local = now()
    skew = local - parsed.timestamp()
    text = f"local clock {abs(skew):.0f} s {'ahead of' if skew >= 0 else 'behind'} the server"
    outside = (not_before is not None and local < not_before) or (
        not_after is not None and local > not_after
    )
    if outside or abs(skew) > CLOCK_FAIL_S:
        return fail("clock", text + ": TLS certificates will not validate", CLOCK_FIX)
    if abs(skew) > CLOCK_WARN_S:
        return warn("clock", text, CLOCK_FIX)
    return ok("clock", text)
