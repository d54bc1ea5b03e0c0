"""The broker link: one task that connects (with backoff), publishes discovery, availability and
the state topics, and hands command messages to the daemon. It never blocks the event loop
(aiomqtt runs the connect in an executor; publishing is its own task) nor the audio path.

aiomqtt (on paho-mqtt 2) is the client: MQTT 3.1.1/5, TLS, last will, keepalive pings and
asyncio without a thread of its own; writing and keeping a protocol client here would be more code
than all of this.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from voicebox.config import MqttConfig, Secret
from voicebox.logs import event
from voicebox.mqtt.discovery import (
    BIRTH_ONLINE,
    OFFLINE,
    ONLINE,
    Command,
    CommandError,
    Device,
    discovery_messages,
    parse_command,
    topics_for,
)

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
CONNECT_TIMEOUT_S = 10.0


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Seconds before connect attempt `attempt` (1, 2, ...): doubling from 1 s to 60 s, +-20 %."""
    base = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2.0 ** max(0, attempt - 1))
    return round(base * rng.uniform(0.8, 1.2), 2)


def port_of(cfg: MqttConfig) -> int:
    return cfg.port if cfg.port is not None else (8883 if cfg.tls else 1883)


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """mqtt.tls: None (plain), the system's CA store (true), or one CA file."""
    if cfg.tls is False:
        return None
    if cfg.tls is True:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(cfg.tls))


def explain(error: BaseException, cfg: MqttConfig) -> str:
    """What a failed connect or a lost link means, with the fix where there is one."""
    where = f"{cfg.host}:{port_of(cfg)}"
    rc = getattr(error, "rc", None)
    code = getattr(rc, "value", rc)
    text = str(error)
    if code in (4, 5, 134, 135):
        who = f"user {cfg.username!r}" if cfg.username else "an anonymous client"
        return (
            f"the broker at {where} refused {who} (not authorised): check mqtt.username and "
            "the credential mqtt_password or $VOICEBOX_MQTT_PASSWORD"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"TLS: the certificate of {where} is not trusted ({_tail(text)}): check mqtt.tls"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return f"TLS: {where} does not speak TLS on this port: check mqtt.port and mqtt.tls"
    if re.search(r"Errno -[0-9]+\]|Name or service not known|getaddrinfo", text):
        return f"cannot resolve {cfg.host!r} ({_tail(text)}): check mqtt.host"
    if "Connection refused" in text and code is None:
        return f"nothing accepts connections at {where}: is the broker running? (mqtt.port)"
    if "timed out" in text.lower():
        return f"no answer from {where} within {CONNECT_TIMEOUT_S:.0f} s"
    return f"{where}: {_tail(text) or type(error).__name__}"


def _tail(text: str) -> str:
    return text.split("] ", 1)[-1].strip()[:160]


class MqttLink:
    """The daemon's link to one broker, as `mqtt.*` configures it."""

    def __init__(
        self,
        cfg: MqttConfig,
        password: Secret | None,
        device: Device,
        read: Callable[[], dict[str, str]],
        on_command: Callable[[Command], str | None],
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.topics = topics_for(cfg, device.hostname)
        self._password = password
        self._device = device
        self._read = read
        self._on_command = on_command
        self._rng = rng or random.Random()
        self._published: dict[str, str] = {}  # topic -> payload the broker holds from us
        self._pending: dict[str, str] = {}  # topic -> payload to publish (latest wins)
        self._dirty = asyncio.Event()
        self._stopping = False
        self._client: aiomqtt.Client | None = None
        self._up = False  # this attempt connected (its loss is news, whatever the error)
        self.connected = False
        self.attempt = 0
        self.error: str | None = None
        self.since: float | None = None
        self.counters = {"connects": 0, "published": 0, "commands": 0, "refused": 0}

    # --- from the daemon -------------------------------------------------------------------

    def refresh(self) -> None:
        """The daemon's state may have changed: queue the topics whose value did (no I/O)."""
        if not self.connected:
            return
        for name, payload in self._read().items():
            topic = self.topics.state(name)
            if self._published.get(topic) != payload:
                self._pending[topic] = payload
        if self._pending:
            self._dirty.set()

    def snapshot(self) -> dict[str, Any]:
        return {
            "broker": f"{self.cfg.host}:{port_of(self.cfg)}",
            "tls": bool(self.cfg.tls),
            "connected": self.connected,
            "connected_for_s": (
                round(time.monotonic() - self.since, 1) if self.connected and self.since else None
            ),
            "error": self.error,
            "attempt": self.attempt,
            "base_topic": self.topics.base,
            **self.counters,
        }

    async def run(self) -> None:
        """Connect, serve, and after any loss back off and connect again, until cancelled."""
        while not self._stopping:
            self._up = False
            try:
                await self._serve()
            except aiomqtt.MqttError as exc:
                self._lost(exc)
            except (OSError, ssl.SSLError, ValueError) as exc:  # a CA file gone since load, ...
                self._lost(exc)
            if self._stopping:
                return
            self.attempt += 1
            delay = backoff_s(self.attempt, self._rng)
            event(log, "mqtt.retry", logging.DEBUG, attempt=self.attempt, delay_s=delay)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        """Say offline (retained) and disconnect; the last will is for an unclean end."""
        self._stopping = True
        client = self._client
        if client is not None and self.connected:
            try:
                async with asyncio.timeout(2.0):
                    await client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
            except (TimeoutError, aiomqtt.MqttError):
                pass
        self._dirty.set()

    # --- the connection --------------------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        cfg = self.cfg
        return aiomqtt.Client(
            cfg.host,
            port_of(cfg),
            username=cfg.username,
            password=self._password.reveal() if self._password else None,
            identifier=f"voicebox-{self.topics.node_id}",
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            keepalive=cfg.keepalive_s,
            tls_context=tls_context(cfg),
            timeout=CONNECT_TIMEOUT_S,
            # A PUBACK then a state PUBLISH are two small writes: with Nagle the second waits
            # for the broker's delayed ACK (40 ms on Linux); measured in bench_mqtt.py.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            logger=logging.getLogger("voicebox.mqtt.client"),
        )

    async def _serve(self) -> None:
        client = self._client_for()
        async with client:
            self._client = client
            self._up = True
            self.connected = True
            self.since = time.monotonic()
            self.counters["connects"] += 1
            event(log, "mqtt.connected", broker=f"{self.cfg.host}:{port_of(self.cfg)}",
                  attempt=self.attempt, base_topic=self.topics.base)  # fmt: skip
            self.attempt = 0
            self.error = None
            self._published.clear()
            await client.subscribe([(self.topics.commands, 1), (self.topics.birth, 1)])
            await self._announce(client)
            publisher = asyncio.create_task(self._publish_changes(client), name="mqtt-publish")
            try:
                await self._receive(client)
            finally:
                publisher.cancel()
                await asyncio.gather(publisher, return_exceptions=True)
                self.connected = False
                self._client = None

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Discovery, availability and every state topic (after a connect or HA's birth)."""
        for topic, payload in discovery_messages(
            self.topics, self._device, self.cfg.publish_transcripts
        ):
            await client.publish(topic, payload, qos=1, retain=True)
        await client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        self._published.clear()
        self._pending.clear()
        self.refresh()

    async def _publish_changes(self, client: aiomqtt.Client) -> None:
        while not self._stopping:
            await self._dirty.wait()
            self._dirty.clear()
            batch, self._pending = self._pending, {}
            for topic, payload in batch.items():
                await client.publish(topic, payload, qos=1, retain=True)
                self._published[topic] = payload
                self.counters["published"] += 1

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if self._stopping:
                return
            topic = str(message.topic)
            raw = message.payload
            payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw).encode()
            if topic == self.topics.birth:
                if payload.strip() == BIRTH_ONLINE.encode():
                    event(log, "mqtt.rediscovery", reason="home assistant online")
                    await self._announce(client)
                continue
            self._command(topic, payload, bool(message.retain))

    def _command(self, topic: str, payload: bytes, retained: bool) -> None:
        if retained:  # replayed at every connect: a retained "mute ON" would never end
            self.counters["refused"] += 1
            problem = "a retained command is ignored: publish commands without retain"
            event(log, "mqtt.command_refused", logging.WARNING, topic=topic, problem=problem)
            return
        try:
            command = parse_command(self.topics, topic, payload)
        except CommandError as exc:
            self.counters["refused"] += 1
            event(log, "mqtt.command_refused", logging.WARNING, topic=topic, problem=str(exc))
            return
        try:
            refusal = self._on_command(command)
        except Exception as exc:  # a bug behind one command must not end the link
            refusal = f"failed: {exc!r}"
        fields: dict[str, Any] = {"command": command.name}
        if isinstance(command.value, str) and command.name in ("announce", "tell", "context"):
            fields["chars"] = len(command.value)
        elif command.value is not None:
            fields["value"] = command.value
        if refusal is not None:
            self.counters["refused"] += 1
            event(log, "mqtt.command_refused", logging.WARNING, **fields, problem=refusal)
        else:
            self.counters["commands"] += 1
            event(log, "mqtt.command", **fields)
        self.refresh()

    def _lost(self, exc: BaseException) -> None:
        """One log line per new trouble: a broker down for a day is not a line a minute."""
        self.connected = False
        text = explain(exc, self.cfg)
        if self._up or text != self.error:
            name = "mqtt.disconnected" if self._up else "mqtt.unavailable"
            event(log, name, logging.WARNING, error=text, attempt=self.attempt)
        self.error = text
