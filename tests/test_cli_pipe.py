"""A printing command whose reader has gone away (`voicebox doctor | head -3`) exits quietly with
141, the status a shell reports for a tool SIGPIPE ended, never a BrokenPipeError traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audio.test_alsa import asoundrc

REPO = Path(__file__).resolve().parent.parent
SIGPIPE_STATUS = 141


def run_into_closed_pipe(tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run voicebox with stdout a pipe nobody reads any more."""
    r, w = os.pipe()
    os.close(r)
    env = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    env["HOME"] = str(tmp)
    try:
        return subprocess.run(
            [sys.executable, "-m", "voicebox", *args],
            stdout=w, stderr=subprocess.PIPE, env=env, timeout=120, cwd=REPO,
        )  # fmt: skip
    finally:
        os.close(w)


@pytest.fixture
def status_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "status.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(json.dumps({"state": "idle", "uptime_s": 5.0}).encode())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    server.close()


def test_every_printing_command_exits_quietly_into_a_closed_pipe(
    tmp_path: Path, status_socket: Path
) -> None:
    asoundrc(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("agent:\n  agent_id: a\n  api_base: http://127.0.0.1:9\n")
    root = tmp_path / "root"
    root.mkdir()
    commands = [
        ("check-config", "--config", str(config)),
        ("devices",),
        ("status", "--socket", str(status_socket)),
        ("doctor", "--quiet", "--config", str(config), "--root", str(root)),
    ]
    for args in commands:
        proc = run_into_closed_pipe(tmp_path, *args)
        err = proc.stderr.decode()
        assert "Traceback" not in err and "BrokenPipe" not in err, (args, err)
        assert proc.returncode == SIGPIPE_STATUS, (args, proc.returncode, err)


def test_doctor_into_head_prints_its_first_lines(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("agent:\n  agent_id: a\n  api_base: http://127.0.0.1:9\n")
    (tmp_path / "root").mkdir()
    asoundrc(tmp_path)
    proc = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m voicebox doctor --quiet --config {config} "
         f"--root {tmp_path}/root | head -3"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert len(proc.stdout.splitlines()) == 3
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
