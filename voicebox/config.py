"""The daemon's configuration: one typed schema, loaded from YAML with errors that name file:line.

Secrets (the API key) never come from the YAML: they are read from systemd's
`$CREDENTIALS_DIRECTORY`, an environment variable or a file, and kept in a `Secret` that never
prints its value.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_PATH = Path("/etc/voicebox/config.yaml")
EX_CONFIG = 78
CREDENTIAL_NAME = "elevenlabs_api_key"
API_KEY_ENV = "ELEVENLABS_API_KEY"
SECRET_KEYS = {"api_key", "xi_api_key", "xi-api-key", "apikey", "key", "token", "secret"}
TWILIO_CREDENTIAL_NAME = "twilio_auth_token"
TWILIO_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
MQTT_CREDENTIAL_NAME = "mqtt_password"
MQTT_PASSWORD_ENV = "VOICEBOX_MQTT_PASSWORD"


class ConfigError(Exception):
    """An invalid configuration; each line of the message names file:line and key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Secret:
    """A secret string that never shows its value in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def _f(default: Any = dataclasses.MISSING, doc: str = "", **rules: Any) -> Any:
    """A schema field with a docstring and validation rules (ge, gt, le, lt, choices)."""
    meta = {"doc": doc, **rules}
    if isinstance(default, dict | list):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


# --- schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overrides:
    """Per-conversation overrides; each must be enabled in the agent's security settings."""

    first_message: str | None = _f(None, "greeting the agent speaks first")
    prompt: str | None = _f(None, "system prompt")
    language: str | None = _f(None, "ISO 639-1 language code")
    voice_id: str | None = _f(None, "TTS voice of the agent")
    max_duration_s: int | None = _f(None, "conversation length cap sent as an override", gt=0)


@dataclass(frozen=True)
class AgentConfig:
    """Which agent to talk to and how to reach it."""

    agent_id: str = _f("", "the ElevenLabs agent id (required to run)")
    api_base: str = _f("https://api.elevenlabs.io", "REST base; the WebSocket URL derives from it")
    requires_auth: bool = _f(False, "private agent: fetch a signed URL before each connection")
    api_key_file: str | None = _f(None, "file holding the API key (else credential or env var)")
    overrides: Overrides = field(default_factory=Overrides)
    dynamic_variables: dict[str, str | int | float | bool] = _f({}, "variables for the prompt")
    custom_llm_extra_body: dict[str, Any] = _f({}, "forwarded to a custom LLM")
    user_id: str | None = _f(None, "end-user id recorded with conversations")
    connect_timeout_s: float = _f(10.0, "TCP+TLS+WebSocket handshake timeout", gt=0)
    metadata_timeout_s: float = _f(10.0, "wait for conversation_initiation_metadata", gt=0)


@dataclass(frozen=True)
class InputConfig:
    """The microphone."""

    backend: Literal["sounddevice", "file", "room"] = _f(
        "sounddevice", "sounddevice, file, or room (the file in a simulated room)"
    )
    device: str | int | None = _f(None, "name substring or index; default device if unset")
    path: str | None = _f(None, "WAV file fed in real time (file and room backends)")
    loop: bool = _f(False, "file backend: repeat the WAV instead of silence after it")
    sample_rate: int | None = _f(None, "device rate; the device's default if unset", gt=0)
    chunk_ms: int = _f(20, "capture chunk duration", ge=5, le=250)
    queue_ms: int = _f(1000, "capture-to-asyncio queue depth (drop-oldest)", ge=40)
    latency: float | Literal["low", "high"] = _f("high", "PortAudio latency: low, high or s")
    room: RoomConfig = field(default_factory=lambda: RoomConfig())


@dataclass(frozen=True)
class OutputConfig:
    """The speaker."""

    backend: Literal["sounddevice", "file"] = _f("sounddevice", "sounddevice or file")
    device: str | int | None = _f(None, "name substring or index; default device if unset")
    path: str | None = _f(None, "WAV file written on the device clock (file backend)")
    sample_rate: int | None = _f(None, "device rate; the device's default if unset", gt=0)
    block_ms: int = _f(20, "device period", ge=5, le=200)
    prebuffer_ms: int = _f(120, "audio buffered before a reply starts playing", ge=0)
    buffer_ms: int = _f(30000, "playback ring capacity", ge=100)
    latency: float | Literal["low", "high"] = _f("high", "PortAudio latency: low, high or s")
    volume: float = _f(
        100,
        "level of a fresh box, 0-100 on a perceptual curve (0 silent, 1-100: -40..0 dB); a level "
        "set since (tool, buttons, `voicebox volume`) is kept; a float up to 1.0 is an old gain",
        ge=0,
        le=100,
    )


# --- audio processing and the simulated room (issue 12) -----------------------------------


@dataclass(frozen=True)
class ProcessingConfig:
    """Capture-path processing (WebRTC: AEC3, noise suppression, AGC2, high-pass)."""

    echo_cancellation: Literal["auto", "on", "off"] = _f(
        "auto", "auto: on when the mic is live while the agent speaks"
    )
    noise_suppression: Literal["off", "low", "moderate", "high", "very_high"] = _f(
        "moderate", "off, low, moderate, high or very_high"
    )
    auto_gain: bool = _f(False, "adaptive digital gain (AGC2) on the processed mic")
    high_pass: bool = _f(True, "high-pass filter (always on under echo cancellation)")


@dataclass(frozen=True)
class RoomConfig:
    """audio.input.backend room: the mic hears audio.input.path, plus the file output's audio
    through this room, plus noise (a simulation for demos, tests and the bench)."""

    delay_ms: float = _f(40.0, "speaker-to-mic delay", ge=0, le=500)
    tail_ms: float = _f(250.0, "reverberation: 60 dB down after this long", gt=0, le=2000)
    echo_db: float = _f(-6.0, "echo level relative to the speaker", ge=-60, le=12)
    direct_db: float | None = _f(
        10.0, "direct path energy relative to the reverberant tail; null: tail only", ge=-40, le=40
    )
    noise_dbfs: float = _f(-70.0, "background noise level", le=0)
    impulse_response: str | None = _f(None, "a mono WAV impulse response instead of the above")
    seed: int = _f(1, "random seed of the synthetic response and the noise")


@dataclass(frozen=True)
class AudioConfig:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)


@dataclass(frozen=True)
class ReconnectConfig:
    """Backoff after transient failures, and the brake on configuration failures."""

    initial_s: float = _f(0.5, "first backoff cap", gt=0)
    max_s: float = _f(60.0, "backoff cap", gt=0)
    degraded_s: float = _f(300.0, "retry period while degraded (config/account problem)", gt=0)
    stable_after_s: float = _f(30.0, "a session that lived this long resets the backoff", gt=0)
    quick_failure_s: float = _f(5.0, "a session that dies sooner counts as a quick failure", gt=0)
    quick_failures: int = _f(3, "consecutive quick failures that mean degraded", ge=1)


@dataclass(frozen=True)
class ConversationConfig:
    """How conversations are opened, kept and closed."""

    mode: Literal["push_to_talk", "wake_word", "always_on"] = _f(
        "push_to_talk", "push_to_talk, wake_word (hands-free after a local wake word) or always_on"
    )
    idle_close_s: float = _f(
        20.0, "push_to_talk and wake_word: close after this long without speech", gt=0
    )
    # 5 s: noticing a half-open link (< 3 s) plus a reconnect must fit, or the replay drops
    # the start of what was said into the dead link (make chaos, seed 13).
    resume_buffer_s: float = _f(
        5.0, "mic audio kept while (re)connecting, unconfirmed audio replayed included", ge=0
    )
    receive_timeout_s: float = _f(2.0, "no frame for this long while talking: check link", gt=0)
    max_duration_s: int = _f(600, "the service's conversation cap", gt=0)
    rollover: bool = _f(True, "open the next session at a quiet moment before the cap")
    rollover_margin_s: float = _f(30.0, "how long before the cap a rollover may start", ge=0)
    context_turns: int = _f(8, "transcript lines carried into the next session", ge=0)
    daily_limit_minutes: float | None = _f(
        None,
        "conversation minutes a day; then nothing opens until midnight but by the button",
        gt=0,
    )
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)


WAKE_MODELS = ("okay_nabu", "hey_jarvis", "hey_mycroft", "alexa")


@dataclass(frozen=True)
class WakeConfig:
    """The local wake word of `conversation.mode: wake_word` (microWakeWord)."""

    model: str = _f(
        "okay_nabu",
        "okay_nabu, hey_jarvis, hey_mycroft, alexa, or the absolute path of a microWakeWord "
        "model's JSON (its .tflite beside it)",
    )
    threshold: float | None = _f(None, "detection cutoff 0..1; null: the model's own", gt=0, lt=1)
    refractory_s: float = _f(2.0, "after a detection, ignore the word this long", ge=0)


@dataclass(frozen=True)
class ButtonConfig:
    """The push-to-talk button."""

    pin: int | None = _f(17, "BCM pin; null for no button", ge=0, le=53)
    bounce_ms: int = _f(30, "debounce", ge=0)
    hold_ms: int = _f(2000, "a hold this long ends the conversation", ge=100)
    active_low: bool = _f(True, "button to ground with the internal pull-up")
    mode: Literal["hold", "toggle"] = _f("hold", "hold: mic live while held; toggle: press on/off")
    long_press: Literal["end", "mute"] = _f(
        "end", "a hold of hold_ms: end the conversation, or mute / unmute (the mute closes it too)"
    )


@dataclass(frozen=True)
class LedConfig:
    pin: int | None = _f(None, "BCM pin of a PWM LED; null for none", ge=0, le=53)
    active_high: bool = _f(True, "LED lit when the pin is high")
    brightness: float = _f(1.0, "maximum brightness 0..1", ge=0, le=1)


@dataclass(frozen=True)
class MuteSwitchConfig:
    """The privacy mute on a pin of its own: a switch (muted while closed) or a push button."""

    pin: int | None = _f(None, "BCM pin; null for none", ge=0, le=53)
    kind: Literal["switch", "button"] = _f(
        "switch",
        "switch: muted while closed, and it overrules voicebox unmute; button: a press "
        "mutes or unmutes",
    )
    active_low: bool = _f(True, "switch or button to ground with the internal pull-up")
    bounce_ms: int = _f(30, "debounce", ge=0)


@dataclass(frozen=True)
class VolumeButtonConfig:
    """A volume button: a press is one step (5 levels), a hold repeats it."""

    pin: int | None = _f(None, "BCM pin; null for none", ge=0, le=53)
    active_low: bool = _f(True, "button to ground with the internal pull-up")
    bounce_ms: int = _f(30, "debounce", ge=0)
    repeat_ms: int = _f(300, "held: one more step this often", ge=50, le=5000)


@dataclass(frozen=True)
class GpioConfig:
    button: ButtonConfig = field(default_factory=ButtonConfig)
    led: LedConfig = field(default_factory=LedConfig)
    mute: MuteSwitchConfig = field(default_factory=MuteSwitchConfig)
    volume_up: VolumeButtonConfig = field(default_factory=VolumeButtonConfig)
    volume_down: VolumeButtonConfig = field(default_factory=VolumeButtonConfig)


@dataclass(frozen=True)
class TimersConfig:
    """Timers and alarms set by the agent's client tools, rung on the box."""

    enabled: bool = _f(True, "offer set_timer, set_alarm, cancel_timer and list_timers")
    ring_limit_s: float = _f(120.0, "a ring nobody stops ends after this long", gt=0, le=3600)
    max: int = _f(10, "timers and alarms held at once; the tools refuse more", ge=1, le=100)


@dataclass(frozen=True)
class TuningConfig:
    """Bounds for adaptive tuning; with adaptive false the configured values are pinned."""

    adaptive: bool = _f(True, "retune buffers and timeouts from load and audio counters")
    prebuffer_min_ms: int = _f(60, "lowest playback pre-roll", ge=0)
    prebuffer_max_ms: int = _f(600, "highest playback pre-roll", ge=0)
    receive_timeout_max_s: float = _f(10.0, "highest receive timeout", gt=0)
    chunk_max_ms: int = _f(60, "largest capture chunk under load", ge=5, le=250)
    cpu_high_percent: float = _f(85.0, "system CPU above this is high load", gt=0, le=100)
    memory_low_mb: int = _f(150, "available memory below this is memory pressure", ge=0)


@dataclass(frozen=True)
class MonitorConfig:
    interval_s: float = _f(1.0, "sampling period", gt=0)
    health_interval_s: float = _f(300.0, "periodic health log line; 0 disables", ge=0)
    metrics_path: str | None = _f(None, "Prometheus textfile; null disables")
    metrics_interval_s: float = _f(15.0, "how often the metrics file is rewritten", gt=0)


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = _f("info", "log level")


@dataclass(frozen=True)
class VoiceSettings:
    stability: float = _f(0.5, ge=0, le=1)
    similarity_boost: float = _f(0.75, ge=0, le=1)
    style: float = _f(0.0, ge=0, le=1)
    use_speaker_boost: bool = _f(True)
    speed: float = _f(1.0, ge=0.7, le=1.2)


@dataclass(frozen=True)
class TtsConfig:
    """Text-to-speech stream-input settings for announcements; null settings are not sent."""

    voice_id: str = _f("21m00Tcm4TlvDq8ikWAM", "voice for announcements")
    model_id: str = _f("eleven_flash_v2_5", "TTS model")
    output_format: str | None = _f(None, "pcm_<rate>; matched to the output device if unset")
    optimize_streaming_latency: int | None = _f(None, "deprecated by the service, 0..4", ge=0, le=4)
    inactivity_timeout: int | None = _f(None, "seconds, up to 180", ge=1, le=180)
    auto_mode: bool | None = _f(None, "lower latency for whole phrases")
    language_code: str | None = _f(None, "ISO 639-1, some models only")
    enable_ssml_parsing: bool | None = _f(None, "parse SSML in phrases")
    voice_settings: VoiceSettings = field(default_factory=VoiceSettings)
    timeout_s: float = _f(10.0, "give up on a synthesis after this long", gt=0)


@dataclass(frozen=True)
class AnnouncementsConfig:
    """Phrases spoken on daemon events; null disables one."""

    enabled: bool = _f(True, "speak announcements at all")
    ready: str | None = _f("Ready.", "the daemon started")
    reconnecting: str | None = _f("Reconnecting.", "the link dropped")
    degraded: str | None = _f(
        "I can't reach the service. Please check the network and the settings.",
        "configuration, account or long network problem",
    )
    back_online: str | None = _f("Back online.", "recovered from reconnecting or degraded")
    rollover: str | None = _f(None, "session rolled over at the duration cap")
    daily_limit: str | None = _f(
        "That's all the conversation time for today. Press the button if you need me.",
        "conversation.daily_limit_minutes reached",
    )
    rule: Literal["wait", "interrupt"] = _f("wait", "while the agent speaks: wait, or cut it")


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = _f("/var/lib/voicebox", "persistent state (phrase cache)")
    runtime_dir: str = _f("/run/voicebox", "status socket")


@dataclass(frozen=True)
class PhoneConfig:
    """`voicebox phone`: the Twilio Media Streams bridge (its own process and unit). The auth
    token comes from the systemd credential `twilio_auth_token` or $TWILIO_AUTH_TOKEN."""

    enabled: bool = _f(False, "serve phone calls (`voicebox phone` refuses to start otherwise)")
    listen_host: str = _f("127.0.0.1", "address the webhook and media stream server listens on")
    listen_port: int = _f(8088, "port it listens on (0 picks a free one)", ge=0, le=65535)
    public_url: str = _f("", "https URL Twilio reaches this server at (tunnel or reverse proxy)")
    account_sid: str = _f("", "Twilio account SID (AC...)")
    from_number: str = _f("", "caller id of `voicebox call`, E.164 (+15551234567)")
    max_calls: int = _f(4, "concurrent calls; one more is answered busy", ge=1)
    api_base: str = _f("https://api.twilio.com", "Twilio REST base URL")
    region: str | None = _f(None, "Twilio region of the REST API (ie1, au1); null: us1")
    edge: str | None = _f(None, "Twilio edge location (dublin, sydney); null: default")
    give_up_s: float = _f(20.0, "a call without the agent this long is ended", gt=0)
    failure_message: str = _f(
        "Sorry, the assistant is not available right now. Goodbye.",
        "spoken before a call is ended because the agent cannot be reached",
    )


@dataclass(frozen=True)
class MqttConfig:
    """Home Assistant over MQTT discovery. The password comes from the systemd credential
    `mqtt_password` or $VOICEBOX_MQTT_PASSWORD, never from this file."""

    enabled: bool = _f(False, "publish state and take commands over MQTT (Home Assistant)")
    host: str = _f("localhost", "the broker's host name or address")
    port: int | None = _f(None, "its port (null: 1883, or 8883 with tls)", ge=1, le=65535)
    tls: bool | str = _f(False, "false; true (the system's CA store); or a CA certificate file")
    username: str | None = _f(None, "user name at the broker (null: anonymous)")
    discovery_prefix: str = _f("homeassistant", "Home Assistant's discovery prefix")
    node_id: str | None = _f(None, "this box's id in topics and unique ids (null: the hostname)")
    base_topic: str | None = _f(None, "state and command topics' root (null: voicebox/<node_id>)")
    publish_transcripts: bool = _f(False, "publish what the user said (privacy: off by default)")
    keepalive_s: int = _f(30, "MQTT keepalive; a dead link is seen within 1.5x", ge=5, le=600)


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration."""

    agent: AgentConfig = field(default_factory=AgentConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    conversation: ConversationConfig = field(default_factory=ConversationConfig)
    wake: WakeConfig = field(default_factory=WakeConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    timers: TimersConfig = field(default_factory=TimersConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    announcements: AnnouncementsConfig = field(default_factory=AnnouncementsConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    phone: PhoneConfig = field(default_factory=PhoneConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


# --- loading ---------------------------------------------------------------------------------


class _Loader:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []
        self.nodes: dict[str, yaml.Node] = {}  # key path -> its value's node (for cross-checks)

    def problem(self, node: yaml.Node | None, path: str, text: str) -> None:
        where = f"{self.name}:{node.start_mark.line + 1}" if node is not None else self.name
        self.problems.append(f"{where}: {path}: {text}")

    def build(self, cls: type[Any], node: yaml.Node | None, path: str) -> Any:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return cls()
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path or "(top)", f"expected a mapping, got {_show(node)}")
            return cls()
        kwargs: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            if "token" in key.lower() and key not in fields:
                self.problem(
                    key_node,
                    sub,
                    "secrets do not belong in the YAML: put the Twilio auth token in the systemd "
                    f"credential '{TWILIO_CREDENTIAL_NAME}' or ${TWILIO_TOKEN_ENV}",
                )
                continue
            if "password" in key.lower() and key not in fields:
                self.problem(
                    key_node,
                    sub,
                    "secrets do not belong in the YAML: put the MQTT password in the systemd "
                    f"credential '{MQTT_CREDENTIAL_NAME}' or ${MQTT_PASSWORD_ENV}",
                )
                continue
            if key.lower() in SECRET_KEYS or "api_key" in key.lower() and key not in fields:
                self.problem(
                    key_node,
                    sub,
                    "secrets do not belong in the YAML: put the API key in the systemd "
                    f"credential '{CREDENTIAL_NAME}', ${API_KEY_ENV}, or agent.api_key_file",
                )
                continue
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.problem(key_node, sub, f"unknown key{hint}")
                continue
            if key in kwargs:
                self.problem(key_node, sub, "key given twice")
                continue
            self.nodes[sub] = value_node
            kwargs[key] = self.value(hints[key], value_node, sub, fields[key].metadata)
        kwargs = {k: v for k, v in kwargs.items() if v is not _INVALID}
        return cls(**kwargs)

    def value(self, tp: Any, node: yaml.Node, path: str, rules: Mapping[str, Any]) -> Any:
        if dataclasses.is_dataclass(tp):
            return self.build(typing.cast(type[Any], tp), node, path)
        origin = typing.get_origin(tp)
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                self.problem(node, path, f"expected a mapping, got {_show(node)}")
                return _INVALID
            return self.plain(node, path)
        if origin is list:
            if not isinstance(node, yaml.SequenceNode):
                self.problem(node, path, f"expected a list, got {_show(node)}")
                return _INVALID
            return self.plain(node, path)
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, path, f"expected {_describe(tp, rules)}, got {_show(node)}")
            return _INVALID
        raw = self.plain(node, path)
        if raw is _INVALID:
            return _INVALID
        if isinstance(raw, float) and not math.isfinite(raw):
            self.problem(node, path, f"expected a finite number, got {node.value!r}")
            return _INVALID
        for option in _options(tp):
            ok, val = _coerce(option, raw)
            if ok:
                numeric = isinstance(val, int | float) and not isinstance(val, bool)
                if numeric and not _in_range(val, rules):
                    break
                return val
        self.problem(node, path, f"expected {_describe(tp, rules)}, got {_show(node)}")
        return _INVALID

    def plain(self, node: yaml.Node, path: str) -> Any:
        """The node as plain data, or _INVALID with a problem at its line (an unknown tag)."""
        try:
            data = _plain(node)
        except Exception as exc:  # noqa: BLE001 - YAMLError, or ValueError from a constructor
            mark = getattr(exc, "problem_mark", None)
            line = mark.line if mark is not None else node.start_mark.line
            text = "invalid YAML: " + (getattr(exc, "problem", None) or str(exc))
            self.problems.append(f"{self.name}:{line + 1}: {path}: {text}")
            return _INVALID
        if not isinstance(node, yaml.ScalarNode):
            bad = _non_finite(node)
            if bad is not None:
                self.problem(bad, path, f"expected finite numbers, got {bad.value!r}")
                return _INVALID
        return data


_INVALID = object()


def _non_finite(node: yaml.Node) -> yaml.Node | None:
    """The first scalar inside `node` that YAML reads as NaN or infinity (JSON has neither)."""
    if isinstance(node, yaml.ScalarNode):
        value = _plain(node) if node.tag.endswith(":float") else None
        return node if isinstance(value, float) and not math.isfinite(value) else None
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    for child in children:
        found = _non_finite(child)
        if found is not None:
            return found
    return None


def _options(tp: Any) -> list[Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return list(typing.get_args(tp))
    return [tp]


def _coerce(tp: Any, raw: Any) -> tuple[bool, Any]:
    if tp is type(None):
        return raw is None, None
    if typing.get_origin(tp) is Literal:
        words = typing.get_args(tp)
        if isinstance(raw, bool) and ("on" in words or "off" in words):  # YAML 1.1's bare on/off
            raw = "on" if raw else "off"
        return raw in words, raw
    if tp is bool:
        return isinstance(raw, bool), raw
    if tp is int:
        return isinstance(raw, int) and not isinstance(raw, bool), raw
    if tp is float:
        ok = isinstance(raw, int | float) and not isinstance(raw, bool)
        return ok, float(raw) if ok else None
    if tp is str:
        return isinstance(raw, str), raw
    if tp is Any:
        return True, raw
    return False, None


def _in_range(v: float, rules: Mapping[str, Any]) -> bool:
    return not (
        ("ge" in rules and v < rules["ge"])
        or ("gt" in rules and v <= rules["gt"])
        or ("le" in rules and v > rules["le"])
        or ("lt" in rules and v >= rules["lt"])
    )


def _describe(tp: Any, rules: Mapping[str, Any]) -> str:
    names = []
    for option in _options(tp):
        if option is type(None):
            names.append("null")
        elif typing.get_origin(option) is Literal:
            names.append(" or ".join(repr(a) for a in typing.get_args(option)))
        elif option is bool:
            names.append("true or false")
        elif option is int:
            names.append("an integer")
        elif option is float:
            names.append("a number")
        elif option is str:
            names.append("a string")
        else:
            names.append(getattr(option, "__name__", str(option)))
    text = " or ".join(names)
    bounds = [
        f"{op} {rules[k]}"
        for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if k in rules
    ]
    return text + (" " + " and ".join(bounds) if bounds else "")


def _plain(node: yaml.Node) -> Any:
    """The node as plain Python data (safe types only); raises for an unknown tag (YAMLError)
    or a value its tag cannot hold (ValueError: 2024-13-45, !!int abc)."""
    return yaml.constructor.SafeConstructor().construct_document(node)


def _show(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode):
        if node.value == "":
            return "nothing"
        try:
            return repr(_plain(node))
        except Exception:  # noqa: BLE001 - shown as written
            return repr(node.value)
    return "a mapping" if isinstance(node, yaml.MappingNode) else "a list"


def parse(text: str, name: str = "config.yaml") -> Config:
    """Parse YAML text into a Config; raise ConfigError naming every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{name}{line}: invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: invalid YAML: {exc}"]) from None
    loader = _Loader(name)
    cfg = loader.build(Config, root, "")
    _cross_checks(cfg, loader)
    _processing_checks(cfg, loader)
    _wake_checks(cfg, loader)
    if loader.problems:
        raise ConfigError(loader.problems)
    return typing.cast(Config, cfg)


def _cross_checks(cfg: Config, loader: _Loader) -> None:
    nodes = loader.nodes
    for side in ("input", "output"):
        sub = getattr(cfg.audio, side)
        if sub.backend == "file" and not sub.path:
            where = nodes.get(f"audio.{side}.backend")
            loader.problem(where, f"audio.{side}.path", "required when backend is 'file'")
    t = cfg.tuning
    if t.prebuffer_min_ms > t.prebuffer_max_ms:
        where = nodes.get("tuning.prebuffer_min_ms")
        loader.problem(where, "tuning.prebuffer_min_ms", "must not exceed tuning.prebuffer_max_ms")
    out = cfg.audio.output
    if out.prebuffer_ms >= out.buffer_ms:
        where = nodes.get("audio.output.prebuffer_ms") or nodes.get("audio.output.buffer_ms")
        loader.problem(
            where,
            "audio.output.prebuffer_ms",
            f"must be less than audio.output.buffer_ms ({out.buffer_ms}): the ring has to hold "
            "the pre-roll",
        )
    problem = api_base_problem(cfg.agent.api_base)
    if problem is not None:
        loader.problem(nodes.get("agent.api_base"), "agent.api_base", problem)
    pins: dict[int, str] = {}
    for key in ("gpio.button.pin", "gpio.led.pin", "gpio.mute.pin", "gpio.volume_up.pin",
                "gpio.volume_down.pin"):  # fmt: skip
        _, part, _ = key.split(".")
        pin = getattr(cfg.gpio, part).pin
        if pin is None:
            continue
        if pin in pins:
            loader.problem(nodes.get(key), key, f"GPIO{pin} is already {pins[pin]}")
        pins.setdefault(pin, key)
    for key in ("phone.public_url", "phone.api_base"):
        url = getattr(cfg.phone, key.split(".")[1])
        problem = api_base_problem(url) if url else None
        if problem is not None:
            loader.problem(nodes.get(key), key, problem)
    _mqtt_checks(cfg.mqtt, loader)


_TOPIC_WORD = re.compile(r"[A-Za-z0-9_-]+")


def _mqtt_checks(mq: MqttConfig, loader: _Loader) -> None:
    """Topics a broker accepts and Home Assistant can discover; a CA file that exists."""
    nodes = loader.nodes
    if mq.node_id is not None and not _TOPIC_WORD.fullmatch(mq.node_id):
        text = f"only letters, digits, '_' and '-' (Home Assistant's rule), got {mq.node_id!r}"
        loader.problem(nodes.get("mqtt.node_id"), "mqtt.node_id", text)
    for key in ("discovery_prefix", "base_topic"):
        topic = getattr(mq, key)
        if topic is None:
            continue
        if any(not part for part in topic.split("/")) or any(c in topic for c in "+#\x00"):
            text = f"expected a topic like 'a/b' without '+', '#' or empty levels, got {topic!r}"
            loader.problem(nodes.get(f"mqtt.{key}"), f"mqtt.{key}", text)
    if not mq.host.strip():
        loader.problem(nodes.get("mqtt.host"), "mqtt.host", "expected the broker's host name")
    if isinstance(mq.tls, str) and mq.enabled and not Path(mq.tls).is_file():
        text = f"no CA certificate file at {mq.tls!r} (or true: the system's CA store)"
        loader.problem(nodes.get("mqtt.tls"), "mqtt.tls", text)


def api_base_problem(api: str) -> str | None:
    """Why `api` cannot be the REST base the connection derives its URLs from, or None."""
    if any(c.isspace() for c in api):
        return f"expected an http(s) URL without spaces, got {api!r}"
    try:
        parts = urllib.parse.urlsplit(api)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return f"not a valid URL ({exc}): {api!r}"
    if parts.scheme not in ("http", "https"):
        return f"expected an http(s) URL, got {api!r}"
    host = parts.hostname
    if not host:
        return f"no host in {api!r}"
    try:
        host.encode("idna")  # what the socket layer does with it
    except UnicodeError:
        return f"host {host!r} is not a valid host name (empty or over-long label)"
    return None


def _processing_checks(cfg: Config, loader: _Loader) -> None:
    """audio.processing needs its library; the room needs a file output to hear."""
    import importlib.util

    a = cfg.audio
    nodes = loader.nodes
    if a.input.backend == "room":
        where = nodes.get("audio.input.backend")
        if not a.input.path:
            loader.problem(where, "audio.input.path", "required when backend is 'room'")
        if a.output.backend != "file":
            text = "room needs audio.output.backend: file (what it hears)"
            loader.problem(where, "audio.input.backend", text)
    p = a.processing
    asked = [
        key
        for key, on in (
            ("echo_cancellation", p.echo_cancellation == "on"),
            ("noise_suppression", p.noise_suppression != "off"),
            ("auto_gain", p.auto_gain),
        )
        if on
    ]
    asked = [k for k in asked if f"audio.processing.{k}" in nodes]
    if asked and importlib.util.find_spec("pywebrtc_audio") is None:
        for key in asked:
            node = nodes[f"audio.processing.{key}"]
            loader.problem(
                node,
                f"audio.processing.{key}",
                "needs the WebRTC audio processing library: pip install pywebrtc-audio "
                "(make bootstrap installs it), or set it off",
            )


def wake_model_problem(model: str) -> str | None:
    """Why `wake.model` cannot be loaded (a built-in name, or a model JSON with its tflite)."""
    if model in WAKE_MODELS:
        return None
    path = Path(model)
    if not path.is_absolute() or path.suffix != ".json":
        names = ", ".join(WAKE_MODELS)
        return f"expected one of {names}, or the absolute path of a model's .json, got {model!r}"
    try:
        import json

        spec = json.loads(path.read_text(encoding="utf-8"))
        tflite = path.parent / str(spec["model"])
        float(spec["micro"]["probability_cutoff"])
        int(spec["micro"]["sliding_window_size"])
    except OSError as exc:
        return f"cannot read {model}: {exc.strerror or exc}"
    except (ValueError, KeyError, TypeError) as exc:
        return f"{model} is not a microWakeWord model config ({type(exc).__name__}: {exc})"
    if not tflite.is_file():
        return f"{model} names {tflite.name}, which is not beside it"
    return None


def _wake_checks(cfg: Config, loader: _Loader) -> None:
    """wake_word needs the wake-word library and a model it can load."""
    import importlib.util

    if cfg.conversation.mode != "wake_word":
        return
    nodes = loader.nodes
    if importlib.util.find_spec("pymicro_wakeword") is None:
        loader.problem(
            nodes.get("conversation.mode"),
            "conversation.mode",
            "wake_word needs the wake-word library: pip install 'pymicro-wakeword>=2.5,<3' "
            "(make bootstrap and install.sh install it), or choose another mode",
        )
    problem = wake_model_problem(cfg.wake.model)
    if problem is not None:
        loader.problem(
            nodes.get("wake.model") or nodes.get("conversation.mode"), "wake.model", problem
        )


class NotUtf8Error(ConfigError):
    """A config or secret file that is not UTF-8 text (a key saved as UTF-16 on Windows)."""


def decode_utf8(data: bytes, name: str) -> str:
    """`data` as text (a UTF-8 BOM dropped); NotUtf8Error names `name` when it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        what = "UTF-16 text" if utf16 else f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise NotUtf8Error([f"{name}: not UTF-8 ({what}): save it as UTF-8"]) from None


def read_utf8(path: Path) -> str:
    """The file's text (a UTF-8 BOM dropped); NotUtf8Error names the file, OSError passes."""
    return decode_utf8(path.read_bytes(), str(path))


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config file (default /etc/voicebox/config.yaml)."""
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        text = read_utf8(p)
    except FileNotFoundError:
        raise ConfigError([f"{p}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    return parse(text, str(p))


def with_changes(cfg: Any, **changes: Any) -> Any:
    """A copy of a (nested) config with dotted keys replaced: with_changes(c, **{"a.b": 1})."""
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = with_changes(getattr(cfg, head), **sub)
    return dataclasses.replace(cfg, **direct)


# --- secrets ---------------------------------------------------------------------------------


def load_api_key(cfg: Config, environ: Mapping[str, str] | None = None) -> Secret | None:
    """The API key: systemd credential, then $ELEVENLABS_API_KEY, then agent.api_key_file.
    A key file that cannot be decoded raises NotUtf8Error (a ConfigError)."""
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        value = _read_secret(Path(cred_dir) / CREDENTIAL_NAME)
        if value:
            return Secret(value)
    value = env.get(API_KEY_ENV, "").strip()
    if value:
        return Secret(value)
    if cfg.agent.api_key_file:
        value = _read_secret(Path(cfg.agent.api_key_file))
        if value:
            return Secret(value)
    return None


def load_twilio_token(environ: Mapping[str, str] | None = None) -> Secret | None:
    """The Twilio auth token: systemd credential, then $TWILIO_AUTH_TOKEN (never the YAML).
    A credential that cannot be decoded raises NotUtf8Error (a ConfigError)."""
    return _credential_or_env(TWILIO_CREDENTIAL_NAME, TWILIO_TOKEN_ENV, environ)


def load_mqtt_password(environ: Mapping[str, str] | None = None) -> Secret | None:
    """The MQTT password: systemd credential, then $VOICEBOX_MQTT_PASSWORD (never the YAML)."""
    return _credential_or_env(MQTT_CREDENTIAL_NAME, MQTT_PASSWORD_ENV, environ)


def _credential_or_env(
    name: str, variable: str, environ: Mapping[str, str] | None
) -> Secret | None:
    env = os.environ if environ is None else environ
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        value = _read_secret(Path(cred_dir) / name)
        if value:
            return Secret(value)
    value = env.get(variable, "").strip()
    return Secret(value) if value else None


def secret_value(text: str, name: str) -> str:
    """A key or token as read, stripped; NotUtf8Error when it holds what no key can (the NULs of
    UTF-16 without a BOM, other control or non-ASCII characters)."""
    value = text.strip()
    if not (value.isascii() and value.isprintable()):
        raise NotUtf8Error(
            [
                f"{name}: not a key (control or non-ASCII characters, UTF-16?): "
                "save the key alone as UTF-8"
            ]
        )
    return value


def read_secret(path: Path) -> str:
    """A key file's value, stripped; NotUtf8Error when it is not UTF-8 or not a key."""
    return secret_value(read_utf8(path), str(path))


def _read_secret(path: Path) -> str:
    try:
        return read_secret(path)
    except OSError:
        return ""


# --- presentation ----------------------------------------------------------------------------


def as_dict(cfg: Any) -> Any:
    """The config as plain data (for printing and status)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: as_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Secret):
        return "***"
    return cfg


def dump(cfg: Config, api_key: Secret | None = None) -> str:
    """The effective config as YAML, with the key shown only as present or absent."""
    data = as_dict(cfg)
    data["agent"]["api_key"] = "*** (set)" if api_key else "(not set)"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
