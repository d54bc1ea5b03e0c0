"""Discovery payloads, state values and command parsing, without a broker (pure)."""

from __future__ import annotations

import json
import random

import pytest

from voicebox.config import ConfigError, MqttConfig, parse
from voicebox.mqtt.discovery import (
    Command,
    CommandError,
    Device,
    discovery_messages,
    last_error,
    node_id_from,
    parse_command,
    topics_for,
    values,
)
from voicebox.mqtt.link import backoff_s, explain

TOPICS = topics_for(MqttConfig(enabled=True), "kitchen.lan")
DEVICE = Device("kitchen", "1.2.3", "Raspberry Pi 5 Model B Rev 1.0")

# What Home Assistant's MQTT schemas require of each component (core's vol.Required keys).
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
    "number": {"command_topic"},
    "select": {"command_topic", "options"},
    "button": {"command_topic"},
    "notify": {"command_topic"},
}


def _configs(transcripts: bool = False) -> dict[str, dict[str, object]]:
    return {t: json.loads(p) for t, p in discovery_messages(TOPICS, DEVICE, transcripts) if p}


def test_every_entity_has_what_its_component_requires_and_a_stable_unique_id() -> None:
    configs = _configs()
    assert len(configs) == 16
    for topic, payload in configs.items():
        prefix, component, node, object_id, last = topic.split("/")
        assert (prefix, node, last) == ("homeassistant", "kitchen", "config")
        assert REQUIRED[component] <= payload.keys(), topic
        assert payload["unique_id"] == f"voicebox_kitchen_{object_id}"
        assert payload["default_entity_id"] == f"{component}.voicebox_kitchen_{object_id}"
        assert payload["availability_topic"] == "voicebox/kitchen/availability"
        device = payload["device"]
        assert isinstance(device, dict) and device["identifiers"] == ["voicebox_kitchen"]
        assert device["sw_version"] == "1.2.3" and payload["origin"] == {
            "name": "voicebox", "sw_version": "1.2.3",
        }  # fmt: skip
        if payload.get("device_class") == "enum":
            assert "state_class" not in payload and "unit_of_measurement" not in payload
        assert payload.get("entity_category") in (None, "diagnostic")
    assert configs == _configs(), "the same box publishes the same payloads"
    select = configs["homeassistant/select/kitchen/mode/config"]
    assert select["options"] == ["push_to_talk", "wake_word", "always_on"]
    number = configs["homeassistant/number/kitchen/volume/config"]
    assert (number["min"], number["max"], number["step"]) == (0, 100, 1)
    state = configs["homeassistant/sensor/kitchen/state/config"]
    assert "muted" in state["options"] and "stopping" not in state["options"]  # type: ignore[operator]


def test_transcripts_appear_only_when_asked_and_are_removed_when_not() -> None:
    off = dict(discovery_messages(TOPICS, DEVICE, False))
    assert off["homeassistant/sensor/kitchen/heard/config"] == ""  # removes an old entity
    on = _configs(True)
    assert (
        on["homeassistant/sensor/kitchen/heard/config"]["state_topic"] == "voicebox/kitchen/heard"
    )
    snap = {"state": "listening", "muted": False, "volume": 70, "mode": "wake_word"}
    assert "heard" not in values(snap, {})
    assert values(snap, {}, "what's the weather")["heard"] == "what's the weather"


def test_topics_from_the_hostname_or_the_config() -> None:
    assert node_id_from("Kitchen Box.local") == "kitchen_box"
    assert node_id_from("...") == "voicebox"
    t = topics_for(
        MqttConfig(node_id="den", base_topic="home/den/voice", discovery_prefix="ha"), "x"
    )
    assert t.command("mute") == "home/den/voice/cmd/mute"
    assert t.config("switch", "mute") == "ha/switch/den/mute/config"
    assert t.birth == "ha/status"


def test_config_refuses_a_password_and_bad_topics_naming_file_line_and_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as err:
        parse("mqtt:\n  enabled: true\n  password: hunter2\n  node_id: my box\n"
              "  base_topic: 'a/+/b'\n  tls: /nowhere/ca.pem\n", "c.yaml")  # fmt: skip
    text = str(err.value)
    assert "c.yaml:3: mqtt.password: secrets do not belong in the YAML" in text
    assert "credential 'mqtt_password' or $VOICEBOX_MQTT_PASSWORD" in text
    assert "hunter2" not in text
    assert "c.yaml:4: mqtt.node_id" in text and "c.yaml:5: mqtt.base_topic" in text
    assert "c.yaml:6: mqtt.tls: no CA certificate file at '/nowhere/ca.pem'" in text
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = parse(f"mqtt: {{enabled: true, tls: {ca}, port: 8883}}\n", "c.yaml")
    assert cfg.mqtt.tls == str(ca)


def test_state_values_from_the_status_snapshot() -> None:
    snap = {
        "state": "speaking", "muted": False, "volume": 55, "mode": "push_to_talk",
        "usage": {"today_minutes": 3.14159, "month_minutes": 40.0},
        "audio": {"processing": True, "erle_db": 31.26, "echo_delay_ms": 48.0},
        "last_close": {"class": "normal", "why": "end_call", "code": 1000},
    }  # fmt: skip
    v = values(snap, {})
    assert v == {
        "state": "speaking", "connected": "ON", "conversation": "ON", "muted": "OFF",
        "volume": "55", "mode": "push_to_talk", "minutes_today": "3.1", "minutes_month": "40.0",
        "erle_db": "31.3", "echo_delay_ms": "48.0",
    }  # fmt: skip
    trouble = values(snap | {"state": "reconnecting", "audio": {"processing": False}}, {})
    assert trouble["connected"] == "OFF" and "erle_db" not in trouble


def test_the_last_error_names_the_class_and_the_close() -> None:
    assert last_error({"class": "normal", "why": "end_call"}, "idle", {}) == ""
    assert last_error({"class": "duration_cap", "why": "cap"}, "connecting", {}) == ""
    text = last_error({"class": "transient", "why": "server restart", "code": 1012}, "idle", {})
    assert text == "transient: server restart (close 1012)"
    degraded = last_error(None, "degraded", {"reason": "audio_device", "waiting_for": "hw:2"})
    assert degraded == "degraded: audio_device (hw:2)"


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("mute", b"ON", Command("mute", True)),
        ("mute", b" off\n", Command("mute", False)),
        ("volume", b"42", Command("volume", 42)),
        ("volume", b"42.0", Command("volume", 42)),
        ("volume", b"0", Command("volume", 0)),
        ("mode", b"wake_word", Command("mode", "wake_word")),
        ("start", b"PRESS", Command("start", None)),
        ("end", b"PRESS", Command("end", None)),
        (
            "announce",
            "Dinner's ready — come down".encode(),
            Command("announce", "Dinner's ready — come down"),
        ),  # noqa: E501
        ("tell", b"what's on today?", Command("tell", "what's on today?")),
        (
            "context",
            b"the user is in the kitchen",
            Command("context", "the user is in the kitchen"),
        ),
    ],
)
def test_commands_parsed(name: str, payload: bytes, expected: Command) -> None:
    assert parse_command(TOPICS, TOPICS.command(name), payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "problem"),
    [
        ("mute", b"1", "mute: expected ON or OFF, got '1'"),
        ("volume", b"42.5", "volume: expected a whole level 0-100"),
        ("volume", b"-1", "volume: expected a whole level 0-100"),
        ("volume", b"nan", "volume: expected a whole level 0-100"),
        ("volume", b"", "volume: expected a level 0-100, got ''"),
        ("mode", b"PUSH_TO_TALK", "mode: expected one of push_to_talk, wake_word, always_on"),
        ("start", b"", "start: expected PRESS"),
        ("announce", b"   ", "announce: the text is empty"),
        ("announce", b"x" * 1001, "announce: the text is 1001 characters (at most 1000)"),
        ("tell", b"hi\x00there", "tell: the text holds control characters"),
        ("tell", b"\xc3\x28", "tell: the payload is not UTF-8 text"),
        ("reboot", b"PRESS", "unknown command topic 'voicebox/kitchen/cmd/reboot'"),
    ],
)
def test_bad_commands_say_what_is_wrong(name: str, payload: bytes, problem: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_command(TOPICS, TOPICS.command(name), payload)
    assert problem in str(err.value)


def test_backoff_doubles_to_a_minute_with_jitter() -> None:
    rng = random.Random(3)
    delays = [backoff_s(n, rng) for n in range(1, 10)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(48 <= d <= 72 for d in delays[6:])


def test_connect_errors_explained_with_the_fix() -> None:
    cfg = MqttConfig(enabled=True, host="broker.lan", username="vb")

    class Refused(Exception):
        rc = 5

    assert "refused user 'vb' (not authorised)" in explain(Refused("x"), cfg)
    assert "is the broker running?" in explain(OSError("[Errno 111] Connection refused"), cfg)
    assert "cannot resolve 'broker.lan'" in explain(
        OSError("[Errno -2] Name or service not known"), cfg
    )
    assert "not trusted" in explain(
        OSError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed"), cfg
    )
