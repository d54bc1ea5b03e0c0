"""The broker link against a real mosquitto: discovery and state retained, commands handed on
(bad ones refused, nothing changed), Home Assistant's birth, a broker late, restarted, refusing
a password, and TLS with a CA the test makes."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.mqtt.broker import PASSWORD, USER, Broker, publish, recording
from voicebox import config
from voicebox.config import MqttConfig, Secret
from voicebox.mqtt import link as link_module
from voicebox.mqtt.discovery import Command, Device, entities
from voicebox.mqtt.link import MqttLink

pytestmark = pytest.mark.asyncio

DEVICE = Device("kitchen", "9.9.9", "Raspberry Pi 5 Model B Rev 1.0")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class FakeDaemon:
    """What the link reads and what it hands commands to."""

    def __init__(self) -> None:
        self.values = {"state": "idle", "muted": "OFF", "volume": "70"}
        self.commands: list[Command] = []
        self.refuse: str | None = None

    def read(self) -> dict[str, str]:
        return dict(self.values)

    def command(self, command: Command) -> str | None:
        self.commands.append(command)
        return self.refuse


@pytest_asyncio.fixture
async def running(broker: Broker) -> AsyncIterator[tuple[MqttLink, FakeDaemon]]:
    fake = FakeDaemon()
    link = MqttLink(_cfg(broker.plain), None, DEVICE, fake.read, fake.command)
    task = asyncio.create_task(link.run())
    await _until(lambda: link.connected)
    yield link, fake
    await link.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _cfg(port: int, **changes: Any) -> MqttConfig:
    return config.with_changes(MqttConfig(enabled=True, host="127.0.0.1", port=port), **changes)  # type: ignore[no-any-return]


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.02)


async def test_discovery_and_state_are_retained_and_only_changes_are_published(
    broker: Broker, running: tuple[MqttLink, FakeDaemon]
) -> None:
    link, fake = running
    async with recording(broker.plain, "homeassistant/#", "voicebox/#") as rec:
        await rec.until("voicebox/kitchen/volume", "70")
        configs = {t: json.loads(p) for t, p, retained in rec.messages if t.endswith("/config")}
        assert all(r for t, _, r in rec.messages), "a late subscriber sees only retained ones"
        assert len(configs) == len(entities(False))
        assert rec.latest("voicebox/kitchen/availability") == "online"
        sensor = configs["homeassistant/sensor/kitchen/state/config"]
        assert sensor["state_topic"] == "voicebox/kitchen/state"
        assert sensor["availability_topic"] == "voicebox/kitchen/availability"
        assert sensor["device"]["identifiers"] == ["voicebox_kitchen"]
        assert len({c["unique_id"] for c in configs.values()}) == len(configs)
        assert configs["homeassistant/switch/kitchen/mute/config"]["command_topic"] == (
            "voicebox/kitchen/cmd/mute"
        )
        before = len(rec.messages)
        fake.values["state"] = "listening"
        link.refresh()
        await rec.until("voicebox/kitchen/state", "listening")
        link.refresh()  # nothing changed: nothing sent
        await asyncio.sleep(0.3)
        assert [m[0] for m in rec.messages[before:]] == ["voicebox/kitchen/state"]
        assert rec.messages[-1][2] is False  # live, not a retained replay


async def test_commands_reach_the_daemon_and_bad_payloads_change_nothing(
    broker: Broker, running: tuple[MqttLink, FakeDaemon], caplog: pytest.LogCaptureFixture
) -> None:
    link, fake = running
    caplog.set_level(logging.INFO, "voicebox.mqtt")
    await publish(broker.plain, "voicebox/kitchen/cmd/mute", "ON")
    await publish(broker.plain, "voicebox/kitchen/cmd/volume", "41")
    await publish(broker.plain, "voicebox/kitchen/cmd/announce", "The washing is done.")
    await _until(lambda: len(fake.commands) == 3)
    assert fake.commands == [
        Command("mute", True), Command("volume", 41), Command("announce", "The washing is done."),
    ]  # fmt: skip
    for topic, payload in (
        ("voicebox/kitchen/cmd/volume", "loud"),
        ("voicebox/kitchen/cmd/volume", "250"),
        ("voicebox/kitchen/cmd/mute", "maybe"),
        ("voicebox/kitchen/cmd/mode", "party"),
        ("voicebox/kitchen/cmd/start", "GO"),
        ("voicebox/kitchen/cmd/announce", ""),
        ("voicebox/kitchen/cmd/frobnicate", "1"),
    ):
        await publish(broker.plain, topic, payload)
    await publish(broker.plain, "voicebox/kitchen/cmd/mute", b"\xff\xfe")
    await _until(lambda: link.counters["refused"] == 8)
    assert len(fake.commands) == 3
    refused = [r.getMessage() for r in caplog.records if "mqtt.command_refused" in r.getMessage()]
    assert len(refused) == 8
    assert any("expected a level 0-100" in line and "loud" in line for line in refused)
    fake.refuse = "the mute switch on GPIO22 is closed: open it"
    await publish(broker.plain, "voicebox/kitchen/cmd/mute", "OFF")
    await _until(lambda: link.counters["refused"] == 9)
    assert "GPIO22" in caplog.records[-1].getMessage()


async def test_a_retained_command_replayed_at_connect_is_refused(broker: Broker) -> None:
    await publish(broker.plain, "voicebox/kitchen/cmd/mute", "ON", retain=True)
    fake = FakeDaemon()
    link = MqttLink(_cfg(broker.plain), None, DEVICE, fake.read, fake.command)
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.counters["refused"] == 1)
        assert fake.commands == []
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_home_assistant_coming_online_gets_discovery_again(
    broker: Broker, running: tuple[MqttLink, FakeDaemon]
) -> None:
    async with recording(broker.plain, "homeassistant/sensor/kitchen/state/config") as rec:
        await rec.until("homeassistant/sensor/kitchen/state/config")
        await publish(broker.plain, "homeassistant/status", "online")
        await _until(lambda: len(rec.messages) == 2)
        assert rec.messages[1][2] is False  # published anew, not the retained copy


async def test_a_broker_late_at_start_then_restarted_is_reconnected_and_given_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(link_module, "BACKOFF_FIRST_S", 0.1)
    monkeypatch.setattr(link_module, "BACKOFF_MAX_S", 0.4)
    caplog.set_level(logging.INFO, "voicebox.mqtt")
    broker = Broker(tmp_path / "broker")
    fake = FakeDaemon()
    link = MqttLink(_cfg(broker.plain), None, DEVICE, fake.read, fake.command, random.Random(1))
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.attempt >= 3)
        lines = [r.getMessage() for r in caplog.records]
        assert sum("mqtt.unavailable" in line for line in lines) == 1  # one line, not one a try
        assert "is the broker running?" in (link.error or "")
        broker.start()
        await _until(lambda: link.connected)
        async with recording(broker.plain, "voicebox/kitchen/state") as rec:
            await rec.until("voicebox/kitchen/state", "idle")
        broker.stop()  # persistence is off: the restarted broker holds nothing retained
        await _until(lambda: not link.connected)
        broker.start()
        await _until(lambda: link.connected)
        async with recording(broker.plain, "voicebox/kitchen/#", "homeassistant/#") as rec:
            await rec.until("voicebox/kitchen/availability", "online")
            await rec.until("homeassistant/number/kitchen/volume/config")
            await rec.until("voicebox/kitchen/volume", "70")
        lines = [r.getMessage() for r in caplog.records]
        assert sum("mqtt.disconnected" in line for line in lines) == 1
        assert sum("mqtt.connected" in line for line in lines) == 2
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        broker.stop()


async def test_a_wrong_password_is_one_line_and_retried(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(link_module, "BACKOFF_FIRST_S", 0.1)
    monkeypatch.setattr(link_module, "BACKOFF_MAX_S", 0.2)
    caplog.set_level(logging.INFO, "voicebox.mqtt")
    fake = FakeDaemon()
    cfg = _cfg(broker.auth, username=USER)
    link = MqttLink(cfg, Secret("not-the-password"), DEVICE, fake.read, fake.command)
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.attempt >= 3)
        lines = [r.getMessage() for r in caplog.records if "mqtt." in r.getMessage()]
        assert sum("mqtt.unavailable" in line for line in lines) == 1, lines
        assert "refused user 'voicebox' (not authorised)" in (link.error or "")
        assert "not-the-password" not in " ".join(lines)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_tls_with_the_test_ca_and_a_password(broker: Broker) -> None:
    fake = FakeDaemon()
    cfg = _cfg(broker.tls, tls=str(broker.ca), username=USER, host="localhost")
    link = MqttLink(cfg, Secret(PASSWORD), DEVICE, fake.read, fake.command)
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.connected)
        assert link.snapshot()["tls"] is True
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    untrusted = MqttLink(_cfg(broker.tls, tls=True, username=USER), Secret(PASSWORD), DEVICE,
                         fake.read, fake.command)  # fmt: skip
    task = asyncio.create_task(untrusted.run())
    try:
        await _until(lambda: untrusted.error is not None)
        assert "TLS: the certificate of 127.0.0.1" in untrusted.error  # type: ignore[operator]
        assert "not trusted" in untrusted.error  # type: ignore[operator]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_clean_stop_says_offline(broker: Broker) -> None:
    fake = FakeDaemon()
    link = MqttLink(_cfg(broker.plain), None, DEVICE, fake.read, fake.command)
    task = asyncio.create_task(link.run())
    await _until(lambda: link.connected)
    await link.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with recording(broker.plain, "voicebox/kitchen/availability") as rec:
        assert await rec.until("voicebox/kitchen/availability") == "offline"
