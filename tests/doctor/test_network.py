"""doctor's network checks on loopback: DNS, TCP, a TLS server whose certificate is not trusted,
and the clock against the simulator's Date header (ok, warn past 60 s, fail past a day)."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doctor.simthread import SimThread
from voicebox.doctor.network import check_network
from voicebox.doctor.report import Check
from voicebox.simulator.server import SimConfig


@pytest.fixture(scope="module")
def sim() -> Iterator[SimThread]:
    with SimThread(SimConfig()) as s:
        yield s


def by_name(url: str, now: float | None = None) -> dict[str, Check]:
    clock = (lambda: now) if now is not None else time.time
    return {c.name: c for c in check_network(url, clock)}


def test_reachable_plain_http_with_the_clock_right(sim: SimThread) -> None:
    checks = by_name(sim.url)
    assert [(n, c.status) for n, c in checks.items()] == [
        ("dns", "ok"), ("tcp", "ok"), ("tls", "warn"), ("clock", "ok"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("offset_s", "status"), [(-90, "warn"), (600, "warn"), (3 * 86400, "fail")]
)
def test_clock_skew_warns_then_fails(sim: SimThread, offset_s: float, status: str) -> None:
    clock = by_name(sim.url, time.time() + offset_s)["clock"]
    assert clock.status == status
    word = "behind" if offset_s < 0 else "ahead of"
    assert word in clock.detail and "timedatectl" in clock.fix


def test_unknown_host_and_closed_port_fail() -> None:
    dns = by_name("https://no-such-host.invalid")
    assert list(dns) == ["dns"] and dns["dns"].status == "fail"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tcp = by_name(f"http://127.0.0.1:{port}")
    assert tcp["tcp"].status == "fail"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make the test certificate (apt install openssl)")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_fails_tls_naming_why(tls_server: int) -> None:
    checks = by_name(f"https://127.0.0.1:{tls_server}")
    tls = checks["tls"]
    assert tls.status == "fail"
    assert "certificate not accepted" in tls.detail
    assert "self-signed" in tls.detail or "self signed" in tls.detail
    assert "clock" not in checks  # no Date worth trusting behind a failed handshake
