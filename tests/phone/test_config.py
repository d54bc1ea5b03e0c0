"""The `phone:` config section, the Twilio token's sources, and the commands' refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebox import cli, config
from voicebox.config import ConfigError


def test_phone_section_parses_with_typed_errors_naming_file_line_key() -> None:
    cfg = config.parse("phone:\n  enabled: true\n  max_calls: 2\n  public_url: https://x.example\n")
    assert cfg.phone.enabled and cfg.phone.max_calls == 2
    with pytest.raises(ConfigError) as exc:
        config.parse("phone:\n  enabled: true\n  max_calls: 0\n  public_url: ftp://x\n", "c.yaml")
    text = str(exc.value)
    assert "c.yaml:3: phone.max_calls: expected an integer >= 1, got 0" in text
    assert "c.yaml:4: phone.public_url: expected an http(s) URL, got 'ftp://x'" in text


def test_auth_token_in_yaml_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as exc:
        config.parse("phone:\n  auth_token: s3cr3t-token-value\n", "c.yaml")
    text = str(exc.value)
    assert text.startswith("c.yaml:2: phone.auth_token: secrets do not belong in the YAML")
    assert "twilio_auth_token" in text and "s3cr3t" not in text


def test_twilio_token_from_credential_then_environment(tmp_path: Path) -> None:
    (tmp_path / "twilio_auth_token").write_text("from-credential\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "TWILIO_AUTH_TOKEN": "from-env"}
    token = config.load_twilio_token(env)
    assert token is not None and token.reveal() == "from-credential"
    assert repr(token) == "Secret('***')"
    token = config.load_twilio_token({"TWILIO_AUTH_TOKEN": " from-env "})
    assert token is not None and token.reveal() == "from-env"
    assert config.load_twilio_token({}) is None


def test_phone_refuses_to_start_without_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("phone:\n  enabled: false\n")
    assert cli.main(["phone", "--config", str(path)]) == config.EX_CONFIG
    err = capsys.readouterr().err
    assert "phone.enabled: false" in err and "no Twilio auth token" in err
    assert "phone.public_url: required" in err and "phone.account_sid: required" in err


def test_call_checks_the_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["call", "5551234"]) == 2
    assert "not an E.164 number" in capsys.readouterr().err
