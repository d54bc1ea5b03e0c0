"""audio.processing and audio.input.room: the keys of issue 12, their spellings and errors."""

from __future__ import annotations

import sys

import pytest

from voicebox.config import ConfigError, parse

NAME = "/etc/voicebox/config.yaml"


def processing(body: str) -> str:
    return "audio:\n  processing:\n" + "".join(f"    {line}\n" for line in body.splitlines())


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse(text, NAME)
    return err.value.problems


def test_defaults() -> None:
    p = parse("").audio.processing
    assert (p.echo_cancellation, p.noise_suppression, p.auto_gain, p.high_pass) == (
        "auto",
        "moderate",
        False,
        True,
    )


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("on", "on"),
        ("off", "off"),
        ("true", "on"),
        ("false", "off"),
        ('"on"', "on"),
        ("auto", "auto"),
    ],
)
def test_echo_cancellation_accepts_yaml_booleans(written: str, read: str) -> None:
    cfg = parse(processing(f"echo_cancellation: {written}"))
    assert cfg.audio.processing.echo_cancellation == read


@pytest.mark.parametrize("level", ["off", "low", "moderate", "high", "very_high"])
def test_noise_suppression_levels(level: str) -> None:
    assert (
        parse(processing(f"noise_suppression: {level}")).audio.processing.noise_suppression == level
    )


def test_bad_values_name_file_line_and_key() -> None:
    text = processing("echo_cancellation: maybe\nnoise_suppression: loud\nauto_gain: yes please")
    found = problems(text)
    assert found[0].startswith(f"{NAME}:3: audio.processing.echo_cancellation: expected 'auto'")
    assert found[1].startswith(f"{NAME}:4: audio.processing.noise_suppression: expected 'off'")
    assert found[2].startswith(f"{NAME}:5: audio.processing.auto_gain: expected true or false")


def test_noise_suppression_on_is_not_a_level() -> None:
    (found,) = problems(processing("noise_suppression: on"))
    assert found.startswith(f"{NAME}:3: audio.processing.noise_suppression:")


def test_unknown_key_suggests_the_right_one() -> None:
    (found,) = problems(processing("echo_canceller: on"))
    assert "did you mean 'echo_cancellation'" in found


def test_on_without_the_library_is_a_config_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # as if not installed
    (found,) = problems(processing("echo_cancellation: on"))
    assert found.startswith(f"{NAME}:3: audio.processing.echo_cancellation:")
    assert "pip install pywebrtc-audio" in found
    # auto and the defaults do not insist: the daemon runs unprocessed and says so in its log
    assert parse(processing("echo_cancellation: auto")).audio.processing.echo_cancellation == "auto"


def test_room_backend_needs_a_path_and_a_file_output() -> None:
    found = problems("audio:\n  input: {backend: room}\n")
    assert any("audio.input.path: required when backend is 'room'" in p for p in found)
    assert any("room needs audio.output.backend: file" in p for p in found)
    cfg = parse(
        "audio:\n  input:\n    backend: room\n    path: in.wav\n"
        "    room: {delay_ms: 80, echo_db: 0}\n"
        "  output: {backend: file, path: out.wav}\n"
    )
    assert cfg.audio.input.room.delay_ms == 80.0 and cfg.audio.input.room.echo_db == 0.0
    (bad,) = problems("audio:\n  input:\n    room: {delay_ms: -5}\n")
    assert bad.startswith(f"{NAME}:3: audio.input.room.delay_ms: expected a number >= 0")
