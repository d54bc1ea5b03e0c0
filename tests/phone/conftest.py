"""No phone test sees a real Twilio token from the developer's environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_twilio_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
