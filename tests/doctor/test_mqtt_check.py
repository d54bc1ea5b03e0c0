"""`voicebox doctor`'s broker check against a real mosquitto: each step named, each failure
with its fix (DNS, TCP, TLS, login)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt.broker import PASSWORD, USER, Broker, free_port
from voicebox import config
from voicebox.config import Config, Secret
from voicebox.doctor.mqtt import check_mqtt, connect_packet, find_password


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("broker"))
    b.start()
    yield b
    b.stop()


def _cfg(**mqtt: object) -> Config:
    changes = {f"mqtt.{k}": v for k, v in mqtt.items()}
    return config.with_changes(Config(), **{"mqtt.enabled": True, **changes})  # type: ignore[no-any-return]


def _verdicts(checks: list[object]) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in checks]  # type: ignore[attr-defined]


def test_every_step_passes_on_a_good_broker_plain_and_tls(broker: Broker) -> None:
    plain = check_mqtt(_cfg(host="127.0.0.1", port=broker.plain), None)
    assert _verdicts(plain) == [("mqtt dns", "ok"), ("mqtt tcp", "ok"), ("mqtt login", "ok")]
    assert "anonymous accepted" in plain[-1].detail
    cfg = _cfg(host="localhost", port=broker.tls, tls=str(broker.ca), username=USER)
    tls = check_mqtt(cfg, Secret(PASSWORD))
    assert [s for _, s in _verdicts(tls)] == ["ok"] * 4
    assert "TLSv1" in tls[2].detail and "user 'voicebox' accepted" in tls[3].detail


def test_each_failure_names_the_step_and_the_fix(broker: Broker) -> None:
    wrong = check_mqtt(_cfg(host="127.0.0.1", port=broker.auth, username=USER), Secret("nope"))
    assert wrong[-1].name == "mqtt login" and wrong[-1].status == "fail"
    assert "not authorised" in wrong[-1].detail or "bad user name" in wrong[-1].detail
    assert "mqtt.username" in wrong[-1].fix and "nope" not in wrong[-1].line()
    anonymous = check_mqtt(_cfg(host="127.0.0.1", port=broker.auth), None)
    assert "set mqtt.username" in anonymous[-1].fix
    untrusted = check_mqtt(_cfg(host="localhost", port=broker.tls, tls=True, username=USER), None)
    assert untrusted[-1].name == "mqtt tls" and untrusted[-1].status == "fail"
    assert "certificate" in untrusted[-1].detail and "CA file" in untrusted[-1].fix
    not_tls = check_mqtt(_cfg(host="localhost", port=broker.plain, tls=str(broker.ca)), None)
    assert not_tls[-1].name == "mqtt tls" and "TLS listener" in not_tls[-1].fix
    closed = check_mqtt(_cfg(host="127.0.0.1", port=free_port()), None)
    assert _verdicts(closed)[-1] == ("mqtt tcp", "fail") and "broker running" in closed[-1].fix
    nowhere = check_mqtt(_cfg(host="broker.invalid"), None)
    assert _verdicts(nowhere) == [("mqtt dns", "fail")] and "mqtt.host" in nowhere[0].fix


def test_the_connect_packet_and_where_the_password_comes_from(tmp_path: Path) -> None:
    packet = connect_packet("id", "u", Secret("p"))
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2 and packet[9] == 0xC2
    long = connect_packet("x" * 200, None, None)
    assert long[1] & 0x80 and long[2] == 1  # a two-byte remaining length
    cred = tmp_path / "creds"
    cred.mkdir()
    (cred / "mqtt_password").write_text("from-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(cred), "VOICEBOX_MQTT_PASSWORD": "from-env"}
    assert find_password(env, tmp_path).reveal() == "from-credential"  # type: ignore[union-attr]
    assert find_password({"VOICEBOX_MQTT_PASSWORD": "from-env"}, tmp_path).reveal() == "from-env"  # type: ignore[union-attr]
    installed = tmp_path / "etc/voicebox/credentials/mqtt/password"
    installed.parent.mkdir(parents=True)
    installed.write_text("installed\n")
    assert find_password({}, tmp_path).reveal() == "installed"  # type: ignore[union-attr]
