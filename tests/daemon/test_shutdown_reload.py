"""A SIGHUP that arrives while the daemon shuts down: nothing is reopened after it was closed."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin

from voicebox import config
from voicebox.daemon import Daemon
from voicebox.simulator.voice import silence


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(revision="d04170", pin_class=MockPWMPin)
    old, Device.pin_factory = Device.pin_factory, f
    yield f
    f.reset()
    Device.pin_factory = old


def held(factory: MockFactory) -> set[str]:
    """The pins some device holds (gpiozero's reservations)."""
    return {pin.name for pin, holders in factory._reservations.items() if holders}


def write_config(tmp: Path, button: int, led: int | None) -> Path:
    with wave.open(str(tmp / "in.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(silence(1.0).astype("<i2").tobytes())
    path = tmp / "config.yaml"
    path.write_text(
        f"""agent:
  agent_id: test-agent
  api_base: http://127.0.0.1:9
audio:
  input: {{backend: file, path: {tmp / "in.wav"}}}
  output: {{backend: file, path: {tmp / "out.wav"}}}
conversation:
  mode: push_to_talk
gpio:
  button: {{pin: {button}}}
  led: {{pin: {"null" if led is None else led}}}
paths:
  state_dir: {tmp / "state"}
  runtime_dir: {tmp / "run"}
"""
    )
    return path


@pytest.mark.asyncio
async def test_a_reload_during_shutdown_does_not_reopen_gpio(
    tmp_path: Path, factory: MockFactory
) -> None:
    path = write_config(tmp_path, button=17, led=None)
    daemon = Daemon(config.load(path), path, None, simulate_button=False)
    daemon._open_gpio(asyncio.get_running_loop())
    assert held(factory) == {"GPIO17"}
    await daemon.shutdown()
    assert held(factory) == set()
    # The file was edited meanwhile, and the SIGHUP handler runs now, as the daemon stops.
    write_config(tmp_path, button=22, led=27)
    await daemon.reload()
    assert held(factory) == set(), "GPIO reopened after the shutdown closed it"
