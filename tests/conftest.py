"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = REPO / "config" / "voicebox.yaml"

# tests/system boots a container: only `make system-test` (which sets VOICEBOX_SYSTEM_ROOT) runs
# it; the default run does not even collect it.
collect_ignore = [] if os.environ.get("VOICEBOX_SYSTEM_ROOT") else ["system"]


# Tests whose figures are measured against real time (echo through a paced room, wake words in
# real-time speech, the benches' load and fault runs): `make test` runs them alone, first, and
# the rest two at a time (pytest-xdist), as most of the rest is waiting, not computing.
REALTIME = (
    "tests/audio/test_echo_pulse_e2e.py",
    "tests/audio/test_echo_room_e2e.py",
    "tests/audio/test_alsa.py",
    "tests/wake/test_wake_room.py",
    "tests/wake/test_wake_daemon.py",
    "tests/bench/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).relative_to(REPO).as_posix()
        if path.startswith(REALTIME):
            item.add_marker(pytest.mark.realtime)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def venv_python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever sees a real key from the developer's environment."""
    for name in ("ELEVENLABS_API_KEY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "JOURNAL_STREAM",
                 "VOICEBOX_MQTT_PASSWORD"):  # fmt: skip
        if name in os.environ:
            monkeypatch.delenv(name)
