"""doctor's client tools check against the simulator's get-agent (and get-tool) over HTTP: an
agent that declares every built-in tool, one that misses one, one that declares a tool the box
lacks, and workspace tools (tool_ids) that can and cannot be read."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.doctor.simthread import SimThread
from voicebox.agent_tools import builtin_specs
from voicebox.config import Config, Secret, with_changes
from voicebox.doctor.report import Check
from voicebox.doctor.service import check_service
from voicebox.simulator.agents import ToolListing
from voicebox.simulator.server import SimConfig

KEY = "sk-tools"
ALL = sorted(spec.name for spec in builtin_specs(Config()))  # the timer tools too


def missing(*declared: str) -> str:
    return "does not declare " + ", ".join(n for n in ALL if n not in declared)


Serve = Callable[..., SimThread]  # (client_tools, tool_listing) -> a running simulator


@pytest.fixture
def serve() -> Iterator[Serve]:
    sims: list[SimThread] = []

    def start(
        client_tools: tuple[str, ...] | None = None, tool_listing: ToolListing = "inline"
    ) -> SimThread:
        sim = SimThread(
            SimConfig(api_key=KEY, client_tools=client_tools, tool_listing=tool_listing)
        )
        sims.append(sim.__enter__())
        return sim

    yield start
    for sim in sims:
        sim.__exit__(None, None, None)


def tools_check(sim: SimThread) -> Check:
    cfg = with_changes(Config(), **{"agent.api_base": sim.url, "agent.agent_id": "agent-t"})
    [check] = [c for c in check_service(cfg, Secret(KEY), "env") if c.name == "client tools"]
    return check


def test_an_agent_declaring_every_builtin_tool_passes(serve: Serve) -> None:
    check = tools_check(serve())
    assert check.status == "ok", check.line()
    assert ", ".join(ALL) in check.detail


def test_a_builtin_tool_the_agent_does_not_declare_is_named(serve: Serve) -> None:
    check = tools_check(serve(("get_time", "get_status")))
    assert check.status == "warn"
    assert missing("get_time", "get_status") in check.detail
    assert "get_time" not in check.detail
    assert "voicebox tools" in check.fix


def test_a_client_tool_the_box_does_not_have_is_named_with_what_happens(serve: Serve) -> None:
    names = (*ALL, "open_garage")
    check = tools_check(serve(names))
    assert check.status == "warn"
    assert "open_garage" in check.detail and "unknown tool" in check.detail
    assert "does not declare" not in check.detail
    assert "remove" in check.fix


def test_both_problems_are_told_in_one_check(serve: Serve) -> None:
    check = tools_check(serve(("get_time", "open_garage")))
    assert check.status == "warn"
    assert missing("get_time") in check.detail
    assert "open_garage" in check.detail


def test_workspace_tools_are_read_by_id(serve: Serve) -> None:
    check = tools_check(serve(("get_time", "set_volume", "lights"), "ids"))
    assert check.status == "warn"
    assert missing("get_time", "set_volume") in check.detail and "lights" in check.detail


def test_unreadable_workspace_tools_are_not_called_missing(serve: Serve) -> None:
    check = tools_check(serve(None, "ids_unreadable"))
    assert check.status == "warn"
    assert "does not declare" not in check.detail
    assert "could not be read (HTTP 403)" in check.detail
    assert "not seen whether it declares " + ", ".join(ALL) in check.detail
