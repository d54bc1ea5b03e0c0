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


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def venv_python() -> str:
    return sys.executable


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test ever sees a real key from the developer's environment."""
    for name in ("ELEVENLABS_API_KEY", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "JOURNAL_STREAM"):
        if name in os.environ:
            monkeypatch.delenv(name)
