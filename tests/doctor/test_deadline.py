"""doctor against loopback servers that misbehave: an invalid Date header, an answer trickled a
byte at a time, a body cut short, headers that never end. Each check has a total deadline, a
truncated answer is not a key accepted, and one check's failure never stops the others."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from voicebox.doctor import run
from voicebox.doctor.host import Host
from voicebox.doctor.network import check_network
from voicebox.doctor.report import Check

AGENT = b'{"name": "trickled", "platform_settings": {}}' + b" " * 400
LATER = ("credential", "journal", "free space", "temperature")  # checks that run after these


def serve(handler: Callable[[socket.socket], None]) -> Iterator[str]:
    """A raw HTTP server on 127.0.0.1: `handler` writes the answer to each connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def one(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                conn.recv(65536)  # the request (small, one read)
                handler(conn)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()


def head(length: int, date: str = "Sun, 06 Dec 2026 12:00:00 GMT") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


@pytest.fixture
def bad_date() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head(len(AGENT), date="not a date at all") + AGENT)

    yield from serve(answer)


@pytest.fixture
def trickle() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head(len(AGENT)))
        for byte in AGENT:
            conn.sendall(bytes([byte]))
            time.sleep(0.3)

    yield from serve(answer)


@pytest.fixture
def truncated() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head(len(AGENT)) + AGENT[:20])  # then the connection closes

    yield from serve(answer)


@pytest.fixture
def endless_headers() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while True:
            conn.sendall(b"X")  # one header line that never ends
            time.sleep(0.3)

    yield from serve(answer)


def doctor(tmp: Path, url: str, deadline_s: float = run.DEADLINE_S) -> dict[str, Check]:
    config = tmp / "config.yaml"
    config.write_text(f"agent:\n  agent_id: a1\n  api_base: {url}\n  connect_timeout_s: 1.0\n")
    found = run.checks(
        str(config), Host(root=tmp / "root"), quiet=True,
        environ={"ELEVENLABS_API_KEY": "sk-test"}, deadline_s=deadline_s,
    )  # fmt: skip
    results = {c.name: c for c in found}
    assert "doctor" not in results, results["doctor"]
    return results


def test_an_invalid_date_header_is_a_clock_warning(bad_date: str) -> None:
    checks = {c.name: c for c in check_network(bad_date)}
    assert checks["clock"].status == "warn", checks["clock"]
    assert "not a date" in checks["clock"].detail


def test_an_invalid_date_header_stops_no_later_check(tmp_path: Path, bad_date: str) -> None:
    checks = doctor(tmp_path, bad_date)
    assert checks["api key"].status == "ok" and checks["clock"].status == "warn"
    assert set(LATER) <= set(checks)


def test_a_trickled_answer_is_cut_at_the_deadline_and_not_ok(tmp_path: Path, trickle: str) -> None:
    checks = doctor(tmp_path, trickle)
    assert "api key" not in checks or checks["api key"].status != "ok"
    assert checks["service"].status == "fail", checks["service"]
    assert checks["clock"].status != "ok"
    assert set(LATER) <= set(checks)


def test_a_truncated_body_is_not_a_key_accepted(tmp_path: Path, truncated: str) -> None:
    checks = doctor(tmp_path, truncated)
    assert "api key" not in checks or checks["api key"].status != "ok"
    assert checks["service"].status == "fail" and "cut short" in checks["service"].detail


def test_a_check_that_hangs_fails_at_its_deadline_and_the_rest_run(
    tmp_path: Path, endless_headers: str
) -> None:
    checks = doctor(tmp_path, endless_headers, deadline_s=2.0)
    assert checks["service"].status == "fail" and "2 s" in checks["service"].detail
    assert checks["network"].status == "fail"
    assert set(LATER) <= set(checks)


def test_a_check_that_raises_is_that_check_failing() -> None:
    def broken() -> Check:
        raise ValueError("no such thing")

    (result,) = run.guarded("journal", broken, deadline_s=5.0)
    assert (result.name, result.status) == ("journal", "fail")
    assert "ValueError: no such thing" in result.detail and result.fix
