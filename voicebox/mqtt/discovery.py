"""Home Assistant MQTT discovery, pure: the topics, the device's entities and their retained
config payloads, the value each state topic carries, and the commands a topic may carry.

Per-component discovery (`<prefix>/<component>/<node_id>/<object_id>/config`), as Home
Assistant's MQTT integration documents it (checked against core's schemas and docs of 2026.7:
required keys, default payloads, default_entity_id). Every entity shares one device block and
one availability topic (`<base>/availability`, online/offline, the offline a last will).
Commands live under `<base>/cmd/<name>`; state under `<base>/<name>`, retained, published only
when it changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from voicebox.config import MqttConfig
from voicebox.mode import MODES
from voicebox.state import State

TEXT_MAX = 1000  # an announcement or message longer than this is refused
ONLINE, OFFLINE = "online", "offline"
BIRTH_ONLINE = "online"  # what Home Assistant publishes on <prefix>/status when it starts


@dataclass(frozen=True)
class Topics:
    prefix: str
    node_id: str
    base: str

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def birth(self) -> str:
        return f"{self.prefix}/status"

    @property
    def commands(self) -> str:
        return f"{self.base}/cmd/+"

    def state(self, name: str) -> str:
        return f"{self.base}/{name}"

    def command(self, name: str) -> str:
        return f"{self.base}/cmd/{name}"

    def config(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"


def node_id_from(hostname: str) -> str:
    """A node id Home Assistant accepts ([A-Za-z0-9_-]) from a host name."""
    word = re.sub(r"[^a-z0-9_-]+", "_", hostname.split(".")[0].lower()).strip("_")
    return word or "voicebox"


def topics_for(cfg: MqttConfig, hostname: str) -> Topics:
    node = cfg.node_id or node_id_from(hostname)
    return Topics(cfg.discovery_prefix, node, cfg.base_topic or f"voicebox/{node}")


# --- entities ---------------------------------------------------------------------------------

_DIAG = {"entity_category": "diagnostic"}


@dataclass(frozen=True)
class Entity:
    component: str
    object_id: str
    name: str
    fields: Mapping[str, Any]  # the component's own keys, topics as names (state/command)


_HEARD = Entity("sensor", "heard", "Last heard", {"state": "heard", "icon": "mdi:text"})


def entities(publish_transcripts: bool) -> list[Entity]:
    """Every entity of the device. `state`/`command` in fields name a state or command topic."""
    found = [
        Entity("sensor", "state", "State", {
            "state": "state", "device_class": "enum", "icon": "mdi:account-voice",
            "options": [str(s) for s in State if s is not State.STOPPING],
        }),
        Entity("binary_sensor", "connected", "Connected", {
            "state": "connected", "device_class": "connectivity", **_DIAG,
        }),
        Entity("binary_sensor", "conversation", "Conversation", {
            "state": "conversation", "device_class": "running", "icon": "mdi:chat",
        }),
        Entity("switch", "mute", "Mute", {
            "state": "muted", "command": "mute", "icon": "mdi:microphone-off",
        }),
        Entity("number", "volume", "Volume", {
            "state": "volume", "command": "volume", "min": 0, "max": 100, "step": 1,
            "mode": "slider", "icon": "mdi:volume-high",
        }),
        Entity("select", "mode", "Mode", {
            "state": "mode", "command": "mode", "options": list(MODES), "icon": "mdi:gesture-tap",
        }),
        Entity("button", "start_conversation", "Start conversation", {
            "command": "start", "icon": "mdi:play",
        }),
        Entity("button", "end_conversation", "End conversation", {
            "command": "end", "icon": "mdi:stop",
        }),
        Entity("notify", "announce", "Announce", {"command": "announce"}),
        Entity("notify", "tell_agent", "Tell the agent", {"command": "tell"}),
        Entity("notify", "agent_context", "Agent context", {"command": "context"}),
        Entity("sensor", "last_error", "Last error", {
            "state": "last_error", "icon": "mdi:alert-circle-outline", **_DIAG,
        }),
        Entity("sensor", "minutes_today", "Conversation minutes today", {
            "state": "minutes_today", "device_class": "duration", "unit_of_measurement": "min",
            "state_class": "total_increasing", "suggested_display_precision": 1, **_DIAG,
        }),
        Entity("sensor", "minutes_month", "Conversation minutes this month", {
            "state": "minutes_month", "device_class": "duration", "unit_of_measurement": "min",
            "state_class": "total_increasing", "suggested_display_precision": 1, **_DIAG,
        }),
        Entity("sensor", "echo_return_loss", "Echo cancelled", {
            "state": "erle_db", "unit_of_measurement": "dB", "state_class": "measurement",
            "icon": "mdi:waveform", **_DIAG,
        }),
        Entity("sensor", "echo_delay", "Echo delay", {
            "state": "echo_delay_ms", "device_class": "duration", "unit_of_measurement": "ms",
            "state_class": "measurement", **_DIAG,
        }),
    ]  # fmt: skip
    if publish_transcripts:
        found.append(_HEARD)
    return found


def removed_entities(publish_transcripts: bool) -> list[Entity]:
    """Entities a change of config takes away (their config topics get an empty payload)."""
    return [] if publish_transcripts else [_HEARD]


@dataclass(frozen=True)
class Device:
    hostname: str
    version: str
    board: str


def discovery_payload(topics: Topics, device: Device, entity: Entity) -> dict[str, Any]:
    """The retained config payload of one entity."""
    payload: dict[str, Any] = {
        "name": entity.name,
        "unique_id": f"voicebox_{topics.node_id}_{entity.object_id}",
        # Home Assistant 2025.10 replaced object_id with default_entity_id (a full entity id)
        "default_entity_id": f"{entity.component}.voicebox_{topics.node_id}_{entity.object_id}",
        "availability_topic": topics.availability,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "device": {
            "identifiers": [f"voicebox_{topics.node_id}"],
            "name": f"voicebox {device.hostname}",
            "manufacturer": "voicebox",
            "model": f"voicebox on {device.board}",
            "sw_version": device.version,
        },
        "origin": {"name": "voicebox", "sw_version": device.version},
    }
    for key, value in entity.fields.items():
        if key == "state":
            payload["state_topic"] = topics.state(value)
        elif key == "command":
            payload["command_topic"] = topics.command(value)
        else:
            payload[key] = value
    if entity.component in ("binary_sensor", "switch"):
        payload |= {"payload_on": "ON", "payload_off": "OFF"}
    if entity.component == "switch":
        payload |= {"state_on": "ON", "state_off": "OFF"}
    if entity.component == "button":
        payload["payload_press"] = "PRESS"
    return payload


def discovery_messages(
    topics: Topics, device: Device, publish_transcripts: bool
) -> Iterator[tuple[str, str]]:
    """(topic, payload) of every config message, removals (empty payloads) included."""
    for entity in entities(publish_transcripts):
        payload = discovery_payload(topics, device, entity)
        yield topics.config(entity.component, entity.object_id), json.dumps(payload)
    for entity in removed_entities(publish_transcripts):
        yield topics.config(entity.component, entity.object_id), ""


# --- state values -----------------------------------------------------------------------------


def _on(flag: bool) -> str:
    return "ON" if flag else "OFF"


def _number(value: Any, digits: int) -> str | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(round(float(value), digits))


def last_error(last_close: Mapping[str, Any] | None, state: str, fields: Mapping[str, Any]) -> str:
    """The error to show, or "" when the last end was normal and nothing is wrong now."""
    if state == State.DEGRADED and fields.get("reason"):
        waiting = fields.get("waiting_for")
        return f"degraded: {fields['reason']}" + (f" ({waiting})" if waiting else "")
    if not last_close or last_close.get("class") in (None, "normal", "duration_cap"):
        return ""
    code = last_close.get("code")
    why = last_close.get("why") or last_close.get("reason") or ""
    return f"{last_close.get('class')}: {why}" + (f" (close {code})" if code else "")


def values(
    snapshot: Mapping[str, Any], state_fields: Mapping[str, Any], heard: str | None = None
) -> dict[str, str]:
    """The payload of each state topic (by name) from the daemon's status snapshot. The last
    error is left out when there is none now, so its retained value stays the last one seen."""
    state = str(snapshot.get("state", "idle"))
    usage = snapshot.get("usage") or {}
    audio = snapshot.get("audio") or {}
    out = {
        "state": state,
        "connected": _on(state not in (State.RECONNECTING, State.DEGRADED, State.STOPPING)),
        "conversation": _on(state in (State.LISTENING, State.SPEAKING)),
        "muted": _on(bool(snapshot.get("muted"))),
        "volume": str(int(snapshot.get("volume", 0))),
        "mode": str(snapshot.get("mode", "")),
    }
    error = last_error(snapshot.get("last_close"), state, state_fields)
    if error:
        out["last_error"] = error[:255]  # Home Assistant keeps at most 255 characters of a state
    for name, key, digits in (
        ("minutes_today", "today_minutes", 1),
        ("minutes_month", "month_minutes", 1),
    ):
        number = _number(usage.get(key), digits)
        if number is not None:
            out[name] = number
    if audio.get("processing"):
        for name in ("erle_db", "echo_delay_ms"):
            number = _number(audio.get(name), 1)
            if number is not None:
                out[name] = number
    if heard is not None:
        out["heard"] = heard[:255]
    return out


# --- commands ---------------------------------------------------------------------------------

CommandName = Literal["mute", "volume", "mode", "start", "end", "announce", "tell", "context"]
COMMANDS: tuple[CommandName, ...] = (
    "mute", "volume", "mode", "start", "end", "announce", "tell", "context",
)  # fmt: skip


class CommandError(ValueError):
    """A command that cannot be taken: says what was wrong with it."""


@dataclass(frozen=True)
class Command:
    name: CommandName
    value: bool | int | str | None


def parse_command(topics: Topics, topic: str, payload: bytes) -> Command:
    """The command a message carries; CommandError naming the problem otherwise."""
    prefix = topics.command("")
    if not topic.startswith(prefix) or topic[len(prefix) :] not in COMMANDS:
        raise CommandError(f"unknown command topic {topic!r}")
    name: CommandName = topic[len(prefix) :]  # type: ignore[assignment]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{name}: the payload is not UTF-8 text") from None
    word = text.strip()
    if name == "mute":
        if word.upper() not in ("ON", "OFF"):
            raise CommandError(f"mute: expected ON or OFF, got {_show(word)}")
        return Command(name, word.upper() == "ON")
    if name == "volume":
        try:
            number = float(word)
        except ValueError:
            raise CommandError(f"volume: expected a level 0-100, got {_show(word)}") from None
        if not (0 <= number <= 100) or number != int(number):
            raise CommandError(f"volume: expected a whole level 0-100, got {_show(word)}")
        return Command(name, int(number))
    if name == "mode":
        if word not in MODES:
            raise CommandError(f"mode: expected one of {', '.join(MODES)}, got {_show(word)}")
        return Command(name, word)
    if name in ("start", "end"):
        if word != "PRESS":
            raise CommandError(f"{name}: expected PRESS, got {_show(word)}")
        return Command(name, None)
    if not word:
        raise CommandError(f"{name}: the text is empty")
    if len(word) > TEXT_MAX:
        raise CommandError(f"{name}: the text is {len(word)} characters (at most {TEXT_MAX})")
    if any(ord(c) < 32 and c not in "\n\t" for c in word):
        raise CommandError(f"{name}: the text holds control characters")
    return Command(name, word)


def _show(word: str) -> str:
    return repr(word if len(word) <= 40 else word[:40] + "...")
