"""Config loading: the sample validates, errors name file:line:key, secrets stay out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from voicebox import config
from voicebox.config import Config, ConfigError, Secret


def test_sample_config_validates_and_matches_defaults(repo: Path) -> None:
    cfg = config.load(repo / "config" / "voicebox.yaml")
    assert cfg == Config()


def test_sample_config_documents_every_key(repo: Path) -> None:
    sample = yaml.safe_load((repo / "config" / "voicebox.yaml").read_text())
    defaults = config.as_dict(Config())

    def keys(d: dict[str, object], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in d.items():
            path = f"{prefix}{k}"
            if (
                isinstance(v, dict)
                and v
                and k not in ("dynamic_variables", "custom_llm_extra_body")
            ):
                out |= keys(v, path + ".")  # type: ignore[arg-type]
            else:
                out.add(path)
        return out

    assert keys(sample) == keys(defaults)


def test_error_names_file_line_key_and_expectation() -> None:
    text = "audio:\n  output:\n    prebuffer_ms: fast\n"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "config.yaml")
    assert err.value.problems == [
        "config.yaml:3: audio.output.prebuffer_ms: expected an integer >= 0, got 'fast'"
    ]


def test_every_problem_is_reported_at_once() -> None:
    text = "conversation:\n  mode: always\n  idle_close_s: -1\ngpio:\n  buton: {}\n"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "c.yaml")
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("c.yaml:2: conversation.mode: expected 'push_to_talk' or")
    assert problems[1].startswith("c.yaml:3: conversation.idle_close_s: expected a number > 0")
    assert problems[2] == "c.yaml:5: gpio.buton: unknown key (did you mean 'button'?)"


def test_bool_is_not_an_integer_and_int_is_a_number() -> None:
    with pytest.raises(ConfigError, match="audio.input.chunk_ms: expected an integer"):
        config.parse("audio:\n  input:\n    chunk_ms: true\n")
    cfg = config.parse("conversation:\n  idle_close_s: 5\n")
    assert cfg.conversation.idle_close_s == 5.0


def test_device_accepts_name_or_index() -> None:
    assert config.parse("audio:\n  input:\n    device: USB\n").audio.input.device == "USB"
    assert config.parse("audio:\n  input:\n    device: 2\n").audio.input.device == 2


def test_file_backend_needs_path() -> None:
    with pytest.raises(ConfigError, match="audio.input.path: required"):
        config.parse("audio:\n  input:\n    backend: file\n")


def test_invalid_yaml_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^c.yaml:\d+: invalid YAML"):
        config.parse("agent:\n  agent_id: [unclosed\n", "c.yaml")


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("audio:\n  input:\n    device: !device USB\n", 3, "audio.input.device"),
        ("agent:\n  dynamic_variables:\n    name: !name Bob\n", 3, "agent.dynamic_variables"),
        ("announcements:\n  ready: !!python/name:os.system\n", 2, "announcements.ready"),
        ("agent:\n  agent_id: 2024-13-45\n", 2, "agent.agent_id"),
        ("agent:\n  dynamic_variables: {day: 2024-02-30}\n", 2, "agent.dynamic_variables"),
        ("agent:\n  agent_id: !!int abc\n", 2, "agent.agent_id"),
        ("monitor:\n  interval_s: !!float x\n", 2, "monitor.interval_s"),
        ("agent:\n  user_id: 0x_\n", 2, "agent.user_id"),
    ],
)
def test_unknown_yaml_tag_is_a_problem_with_its_line(text: str, line: int, key: str) -> None:
    """Unknown tags and values their (implicit or explicit) tag cannot hold."""
    with pytest.raises(ConfigError) as err:
        config.parse(text, "c.yaml")
    (problem,) = err.value.problems
    assert problem.startswith(f"c.yaml:{line}: {key}: invalid YAML:")


def test_check_config_exits_78_on_an_unknown_tag(tmp_path: Path) -> None:
    bad = tmp_path / "tag.yaml"
    bad.write_text("audio:\n  input:\n    device: !device USB\n")
    res = subprocess.run(
        [sys.executable, "-m", "voicebox", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 78
    assert f"{bad}:3: audio.input.device: invalid YAML:" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("conversation:\n  receive_timeout_s: .nan\n", 2, "conversation.receive_timeout_s"),
        (
            "conversation:\n  reconnect:\n    degraded_s: .inf\n",
            3,
            "conversation.reconnect.degraded_s",
        ),
        (
            "conversation:\n  reconnect:\n    initial_s: .NaN\n",
            3,
            "conversation.reconnect.initial_s",
        ),
        ("conversation:\n  reconnect:\n    max_s: .nan\n", 3, "conversation.reconnect.max_s"),
        ("audio:\n  output:\n    latency: -.inf\n", 3, "audio.output.latency"),
        ("tuning:\n  cpu_high_percent: .nan\n", 2, "tuning.cpu_high_percent"),
        ("conversation:\n  idle_close_s: 1.0e+999\n", 2, "conversation.idle_close_s"),
        ("agent:\n  dynamic_variables:\n    a: 1\n    b: .nan\n", 4, "agent.dynamic_variables"),
        ("agent:\n  custom_llm_extra_body: {t: [0.5, .inf]}\n", 2, "agent.custom_llm_extra_body"),
    ],
)
def test_nan_and_infinity_are_refused_everywhere(text: str, line: int, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(text, "c.yaml")
    (problem,) = err.value.problems
    assert problem.startswith(f"c.yaml:{line}: {key}: expected ") and "finite number" in problem
    assert config.parse("agent:\n  dynamic_variables: {a: '.nan', b: 1.5}\n")  # strings pass


def test_every_float_field_refuses_nan() -> None:
    """Walk the schema: no float setting, however nested, accepts .nan."""
    import dataclasses
    import typing

    def float_paths(cls: type, prefix: str = "") -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                out += float_paths(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
            elif float in (typing.get_args(tp) or (tp,)):
                out.append(prefix + f.name)
        return out

    paths = float_paths(Config)
    assert len(paths) > 20
    for path in paths:
        *parents, leaf = path.split(".")
        text = "".join(f"{'  ' * i}{p}:\n" for i, p in enumerate(parents))
        text += f"{'  ' * len(parents)}{leaf}: .nan\n"
        with pytest.raises(ConfigError, match="finite"):
            config.parse(text)


@pytest.mark.parametrize(
    ("api_base", "why"),
    [
        ("https://", "no host"),
        ("https://:443", "no host"),
        ("https://api..elevenlabs.io", "not a valid host name"),
        ("https://.elevenlabs.io", "not a valid host name"),
        ("https://" + "a" * 64 + ".io", "not a valid host name"),
        ("https://api.elevenlabs.io:https", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("ftp://api.elevenlabs.io", "expected an http(s) URL"),
        ("api.elevenlabs.io", "expected an http(s) URL"),
        ("https://api elevenlabs.io", "without spaces"),
    ],
)
def test_api_base_is_checked_like_the_connection_uses_it(api_base: str, why: str) -> None:
    text = f"agent:\n  agent_id: a\n  api_base: '{api_base}'\n"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "c.yaml")
    (problem,) = err.value.problems
    assert problem.startswith("c.yaml:3: agent.api_base: ") and why in problem


@pytest.mark.parametrize(
    "api_base",
    [
        "https://api.elevenlabs.io",
        "http://127.0.0.1:8080",
        "http://[::1]:9/base/",
        "https://münchen.de",
    ],
)
def test_good_api_bases_pass(api_base: str) -> None:
    assert config.parse(f"agent:\n  api_base: '{api_base}'\n").agent.api_base == api_base


def test_check_config_exits_78_on_a_bad_api_base(tmp_path: Path) -> None:
    bad = tmp_path / "url.yaml"
    bad.write_text("agent:\n  agent_id: a\n  api_base: https://api..elevenlabs.io\n")
    res = subprocess.run(
        [sys.executable, "-m", "voicebox", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 78
    assert f"{bad}:3: agent.api_base: host 'api..elevenlabs.io'" in res.stderr
    assert "Traceback" not in res.stderr


def test_prebuffer_must_fit_the_playback_ring() -> None:
    text = "audio:\n  output:\n    buffer_ms: 100\n    prebuffer_ms: 120\n"
    with pytest.raises(ConfigError) as err:
        config.parse(text, "c.yaml")
    assert err.value.problems == [
        "c.yaml:4: audio.output.prebuffer_ms: must be less than audio.output.buffer_ms "
        "(100): the ring has to hold the pre-roll"
    ]


def test_empty_file_is_all_defaults() -> None:
    assert config.parse("") == Config()


def test_api_key_in_yaml_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        config.parse("agent:\n  api_key: sk_supersecret\n")
    assert "secrets do not belong" in str(err.value)
    assert "sk_supersecret" not in str(err.value)


def test_key_sources_in_order(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "elevenlabs_api_key").write_text("from-credential\n")
    keyfile = tmp_path / "key"
    keyfile.write_text("from-file")
    cfg = config.with_changes(Config(), **{"agent.api_key_file": str(keyfile)})
    env = {"CREDENTIALS_DIRECTORY": str(creds), "ELEVENLABS_API_KEY": "from-env"}
    assert config.load_api_key(cfg, env).reveal() == "from-credential"  # type: ignore[union-attr]
    env.pop("CREDENTIALS_DIRECTORY")
    assert config.load_api_key(cfg, env).reveal() == "from-env"  # type: ignore[union-attr]
    assert config.load_api_key(cfg, {}).reveal() == "from-file"  # type: ignore[union-attr]
    assert config.load_api_key(Config(), {}) is None


def test_secret_never_prints() -> None:
    s = Secret("sk_abc123")
    assert "sk_abc123" not in repr(s) and "sk_abc123" not in str(s) and "sk_abc123" not in f"{s}"


def test_check_config_exit_codes_and_redaction(tmp_path: Path, repo: Path) -> None:
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebox",
            "check-config",
            "--config",
            str(repo / "config/voicebox.yaml"),
        ],
        capture_output=True,
        text=True,
        env={"ELEVENLABS_API_KEY": "sk_visible_not", "PATH": "/usr/bin"},
    )
    assert good.returncode == 0, good.stderr
    assert "sk_visible_not" not in good.stdout and "*** (set)" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("audio:\n  output:\n    prebuffer_ms: fast\n")
    res = subprocess.run(
        [sys.executable, "-m", "voicebox", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 78
    assert f"{bad}:3: audio.output.prebuffer_ms" in res.stderr
    assert "Traceback" not in res.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "voicebox", "check-config", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 78 and "no such file" in missing.stderr
