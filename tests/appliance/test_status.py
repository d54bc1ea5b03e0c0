"""The status socket, `voicebox status` in a subprocess against it, and the metrics textfile."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from voicebox.status import MetricsFile, StatusServer, render, write_metrics_periodically

HANG_GUARD_S = 30.0

SNAPSHOT: dict[str, Any] = {
    "version": "0.1.0",
    "state": "listening",
    "uptime_s": 7384.2,
    "conversation": {"id": "conv_01abc", "age_s": 72.5, "turns": 3},
    "last_close": {"code": 1012, "reason": "service restart", "class": "transient"},
    "counters": {"sessions": 12, "reconnects": 3, "button_presses": 40},
    "audio": {"underruns": 2, "handoff_lag_ms": 1.25, "input_device": "USB Audio (hw:2,0)"},
    "monitor": {"cpu_percent": 12.5, "temp_c": 51.3, "throttled": False, "rss_mb": 61.0},
    "tuning": {"prebuffer_ms": 180, "receive_timeout_s": 2.0},
}


@pytest.fixture
def rundir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vbs") as d:  # short: AF_UNIX paths are <108 bytes
        yield Path(d)


async def voicebox(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicebox",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), HANG_GUARD_S)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_status_command_against_a_running_server(rundir: Path) -> None:
    path = rundir / "status.sock"
    server = StatusServer(path, lambda: SNAPSHOT)
    await server.start()
    try:
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600

        rc, out, err = await voicebox("status", "--socket", str(path))
        assert rc == 0, err
        assert out.splitlines()[0] == "voicebox 0.1.0: listening, up 2h 03m"
        for text in ("conv_01abc", "1m 12s", "1012", "service restart", "reconnects", "51.3"):
            assert text in out
        assert re.search(r"prebuffer_ms\s+180", out)

        rc, out, err = await voicebox("status", "--json", "--socket", str(path))
        assert rc == 0, err
        assert json.loads(out) == SNAPSHOT
    finally:
        await server.stop()
    assert not path.exists()


@pytest.mark.asyncio
async def test_socket_path_comes_from_the_config(rundir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"paths:\n  runtime_dir: {rundir}\n", encoding="utf-8")
    server = StatusServer(rundir / "status.sock", lambda: {"state": "idle"})
    await server.start()
    try:
        rc, out, err = await voicebox("status", "--json", "--config", str(cfg))
        assert (rc, json.loads(out)) == (0, {"state": "idle"}), err
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_not_running_is_exit_3_with_one_line(rundir: Path, tmp_path: Path) -> None:
    rc, out, err = await voicebox("status", "--socket", str(rundir / "status.sock"))
    assert (rc, out) == (3, "")
    assert err.strip() == f"voicebox is not running (no daemon at {rundir / 'status.sock'})"

    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a socket file nobody serves
    stale.bind(str(rundir / "status.sock"))
    stale.close()
    rc, out, err = await voicebox("status", "--socket", str(rundir / "status.sock"))
    assert rc == 3 and len(err.strip().splitlines()) == 1

    rc, out, err = await voicebox("status", "--config", str(tmp_path / "missing.yaml"))
    assert rc in (3, 4)  # falls back to /run/voicebox/status.sock
    assert "/run/voicebox/status.sock" in err and "Traceback" not in err


@pytest.mark.asyncio
async def test_stale_socket_replaced_live_one_kept(
    rundir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = rundir / "status.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    first = StatusServer(path, lambda: {"state": "idle"})
    await first.start()
    second = StatusServer(path, lambda: {"state": "impostor"})
    try:
        await second.start()
        assert any("status.socket_in_use" in r.getMessage() for r in caplog.records)
        rc, out, _ = await voicebox("status", "--json", "--socket", str(path))
        assert json.loads(out) == {"state": "idle"}
        await second.stop()
        assert path.exists()
    finally:
        await first.stop()
    assert not path.exists()


@pytest.mark.asyncio
async def test_a_failing_snapshot_still_answers(rundir: Path) -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("audio")

    server = StatusServer(rundir / "s.sock", broken)
    await server.start()
    try:
        rc, out, _ = await voicebox("status", "--json", "--socket", str(rundir / "s.sock"))
        assert rc == 0 and "snapshot failed" in json.loads(out)["error"]
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_unusable_runtime_dir_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    server = StatusServer(blocker / "status.sock", lambda: {})
    await server.start()
    await server.stop()
    assert any(r.getMessage().startswith("status.unavailable") for r in caplog.records)


def test_render_copes_with_partial_snapshots() -> None:
    assert render({}) == "voicebox ?: unknown\n"
    text = render({"state": "degraded", "counters": {}, "extra": 5, "monitor": {"temp_c": None}})
    assert text.splitlines()[0] == "voicebox ?: degraded"
    assert re.search(r"extra\s+5", text) and re.search(r"temp_c\s+-", text)


# --- metrics ---------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_][a-z0-9_]*)(\{[a-z_]+="[^"]*"\})? (-?[0-9.e+]+)$')


def parse_metrics(text: str) -> dict[str, float]:
    """Check the textfile format strictly and return {name{labels}: value}."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter")
            typed.add(name)
            continue
        m = SAMPLE.match(line)
        assert m, line
        assert m.group(1) in typed, f"{m.group(1)} has no TYPE line before it"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def test_metrics_file_format(tmp_path: Path) -> None:
    path = tmp_path / "voicebox.prom"
    MetricsFile(path).write(SNAPSHOT)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["voicebox.prom"]
    text = path.read_text()
    m = parse_metrics(text)
    assert m['voicebox_state{state="listening"}'] == 1
    assert m['voicebox_state{state="idle"}'] == 0
    assert sum(v for k, v in m.items() if k.startswith("voicebox_state{")) == 1
    assert m['voicebox_info{version="0.1.0"}'] == 1
    assert m["voicebox_uptime_s"] == 7384.2
    assert m["voicebox_conversation_turns"] == 3
    assert m["voicebox_counters_reconnects"] == 3
    assert m["voicebox_last_close_code"] == 1012
    assert m["voicebox_audio_handoff_lag_ms"] == 1.25
    assert m["voicebox_monitor_throttled"] == 0
    assert "# TYPE voicebox_counters_sessions counter" in text
    assert "# TYPE voicebox_monitor_temp_c gauge" in text
    assert not any("input_device" in k or "conversation_id" in k for k in m)  # strings skipped


def test_metrics_big_counters_keep_every_digit(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    MetricsFile(path).write({"counters": {"captured_chunks": 123456789}, "x": float("nan")})
    assert "voicebox_counters_captured_chunks 123456789\n" in path.read_text()
    assert "voicebox_x" not in path.read_text()


def test_metrics_write_failure_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = MetricsFile(tmp_path / "missing-dir" / "voicebox.prom")
    with caplog.at_level(logging.WARNING):
        metrics.write(SNAPSHOT)
        metrics.write(SNAPSHOT)
    assert [r.getMessage().split()[0] for r in caplog.records] == ["metrics.write_failed"]


@pytest.mark.asyncio
async def test_metrics_rewritten_periodically(tmp_path: Path) -> None:
    path = tmp_path / "voicebox.prom"
    uptime = iter(range(1000))
    seen = asyncio.Event()

    def snapshot() -> dict[str, Any]:
        value = next(uptime)
        if value == 3:
            seen.set()
        return {"state": "idle", "uptime_s": value}

    task = asyncio.create_task(write_metrics_periodically(MetricsFile(path), snapshot, 0.01))
    try:
        await asyncio.wait_for(seen.wait(), HANG_GUARD_S)
        assert parse_metrics(path.read_text())["voicebox_uptime_s"] >= 3
    finally:
        task.cancel()


@pytest.mark.asyncio
async def test_commands_and_a_client_that_only_reads(rundir: Path) -> None:
    """A command line gets its handler's answer, an unknown one an error; a client that sends
    nothing and only reads (an older `voicebox status`) still gets the snapshot."""
    path = rundir / "status.sock"
    calls: list[str] = []
    commands = {
        "mute": lambda _: calls.append("m") or {"ok": 1},
        "volume": lambda arg: calls.append(f"v{arg}") or {"level": arg},
    }
    server = StatusServer(path, lambda: SNAPSHOT, commands)  # type: ignore[arg-type]
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"mute\n")
        assert json.loads(await asyncio.wait_for(reader.read(), HANG_GUARD_S)) == {"ok": 1}
        writer.close()
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"volume  40 \n")  # the argument is what follows the name, stripped
        assert json.loads(await asyncio.wait_for(reader.read(), HANG_GUARD_S)) == {"level": "40"}
        writer.close()
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"reboot\n")
        answer = json.loads(await asyncio.wait_for(reader.read(), HANG_GUARD_S))
        assert "unknown command 'reboot'" in answer["error"] and calls == ["m", "v40"]
        writer.close()
        reader, writer = await asyncio.open_unix_connection(str(path))  # sends nothing at all
        assert json.loads(await asyncio.wait_for(reader.read(), HANG_GUARD_S)) == SNAPSHOT
        writer.close()
    finally:
        await server.stop()
