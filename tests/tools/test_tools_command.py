"""`voicebox tools`: the built-in client tools as JSON, and every definition backed by a handler."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.convai.fakes import RecordingAudio
from voicebox.agent_tools import builtin_specs
from voicebox.config import Config, TimersConfig
from voicebox.convai.tools import ToolRegistry, builtin_tools
from voicebox.timers import tools as timer_tools
from voicebox.timers.ringer import Timers

BUILTIN = sorted(spec.name for spec in builtin_specs(Config()))
TIMER_TOOLS = {"set_timer", "set_alarm", "cancel_timer", "list_timers"}


class Silent:
    """Where a ring would be heard: nowhere (no timer comes due in these tests)."""

    def cut(self) -> None: ...

    def play_now(self, pcm: bytes, rate: int) -> None: ...

    def hush(self) -> None: ...

    async def phrase(self, text: str) -> tuple[bytes, int] | None:
        return None


def registry(tmp: Path, **kw: Any) -> ToolRegistry:
    """The tools as the daemon registers them: the built-ins and the timers'."""
    tools = builtin_tools(RecordingAudio(), **kw)
    timer_tools.register(tools, Timers(TimersConfig(), tmp, Silent()))
    return tools


def run_tools(repo: Path, python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "voicebox", "tools", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_fresh_box_without_a_config_prints_the_definitions(
    repo: Path, venv_python: str, tmp_path: Path
) -> None:
    proc = run_tools(repo, venv_python, "--config", str(tmp_path / "absent.yaml"))
    assert proc.returncode == 0, proc.stderr
    tools = json.loads(proc.stdout)
    assert isinstance(tools, list)
    assert [t["name"] for t in tools] == BUILTIN
    for tool in tools:
        assert tool["type"] == "client"
        assert tool["description"]
        assert tool["expects_response"] is True
        assert tool["response_timeout_secs"] == 10
        params = tool["parameters"]
        assert params["type"] == "object"
        assert set(params["required"]) <= set(params["properties"])
    volume = next(t for t in tools if t["name"] == "set_volume")
    assert volume["parameters"]["properties"]["level"]["type"] == "integer"
    assert volume["parameters"]["required"] == ["level"]


def test_a_configured_box_prints_the_same_and_a_broken_config_is_refused(
    repo: Path, venv_python: str, tmp_path: Path
) -> None:
    good = tmp_path / "config.yaml"
    good.write_text("agent:\n  agent_id: agent_abc\n")
    proc = run_tools(repo, venv_python, "--config", str(good))
    assert proc.returncode == 0, proc.stderr
    assert [t["name"] for t in json.loads(proc.stdout)] == BUILTIN
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  no_such_key: 1\n")
    proc = run_tools(repo, venv_python, "--config", str(bad))
    assert proc.returncode == 78  # EX_CONFIG: the tool list follows the config
    assert "no_such_key" in proc.stderr and proc.stdout == ""


@pytest.mark.asyncio
async def test_every_spec_has_a_handler_that_takes_its_example_and_described_parameters(
    tmp_path: Path,
) -> None:
    specs = builtin_specs(Config())
    for spec in specs:
        for param in spec.params:
            assert param.type in ("string", "number", "integer", "boolean"), spec.name
            assert param.description.strip(), (spec.name, param.name)
        props = spec.definition()["parameters"]["properties"]
        assert set(props) == {p.name for p in spec.params}
        assert all(set(p) == {"type", "description"} and all(p.values()) for p in props.values())
    tools = registry(tmp_path, status=lambda: {"state": "listening"})
    assert {s.name for s in tools.specs()} == {s.name for s in specs} >= TIMER_TOOLS


@pytest.mark.asyncio
@pytest.mark.parametrize("name", BUILTIN)
async def test_each_handler_answers_its_example_without_an_error(name: str, tmp_path: Path) -> None:
    spec = next(s for s in builtin_specs(Config()) if s.name == name)
    levels: list[tuple[int, str]] = []

    def set_level(level: int, source: str) -> int:
        levels.append((level, source))
        return level

    status: dict[str, Any] = {"state": "listening"}
    tools = registry(tmp_path, status=lambda: status, set_level=set_level)
    if name == "cancel_timer":  # its example names the timer set_timer's example sets
        setter = next(s for s in builtin_specs(Config()) if s.name == "set_timer")
        assert not (await tools.run("set_timer", setter.example(), 5))[1]
    text, is_error = await tools.run(spec.name, spec.example(), spec.response_timeout_s)
    assert not is_error, text
    assert text
    if name == "set_volume":
        assert levels == [(40, "tool")] and text == "volume set to 40"
