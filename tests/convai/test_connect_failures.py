"""Every way opening a session can fail ends classified: bad URLs, peers that are not HTTP, bugs."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.convai.rig import rig
from voicebox.config import Secret, with_changes
from voicebox.simulator.server import SimConfig
from voicebox.state import State

QUIET = {"first_message": "", "ping_interval_s": 0.3}


@asynccontextmanager
async def not_http() -> AsyncIterator[str]:
    """A TCP peer on 127.0.0.1 that answers every request with a line that is not HTTP."""
    accepted: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def runner_alive(r: Any) -> bool:
    return not r.runner.done()


@pytest.mark.asyncio
@pytest.mark.parametrize("auth", [False, True], ids=["public", "signed"])
@pytest.mark.parametrize("base", ["https://", "http://api..elevenlabs.io", "http://host:port"])
async def test_a_bad_api_base_degrades_with_one_clear_line(base: str, auth: bool) -> None:
    async with rig(
        SimConfig(**QUIET),  # type: ignore[arg-type]
        api_key="sk_test",
        agent__requires_auth=auth,
        agent__api_base=base,
    ) as r:
        await r.wait_state(State.DEGRADED)
        await asyncio.sleep(0.2)
        assert runner_alive(r)  # the supervisor did not die of it
        [degraded] = r.logs.events("session.degraded")
        assert "agent.api_base is not usable" in degraded["CAUSE"]
        assert base in degraded["CAUSE"] or str(urlsplit(base).hostname) in degraded["CAUSE"]
        assert r.logs.events("connect.failed")[0]["CLASS"] == "config"


@pytest.mark.asyncio
@pytest.mark.parametrize("auth", [False, True], ids=["public", "signed"])
async def test_a_peer_that_is_not_http_is_a_transient_failure(auth: bool) -> None:
    async with (
        not_http() as base,
        rig(
            SimConfig(**QUIET),  # type: ignore[arg-type]
            api_key="sk_test",
            agent__requires_auth=auth,
            agent__api_base=base,
        ) as r,
    ):
        await r.wait(lambda: len(r.logs.events("connect.failed")) >= 3)
        assert runner_alive(r)
        failed = r.logs.events("connect.failed")
        assert all(f["CLASS"] == "transient" for f in failed)
        assert "did not answer in HTTP/WebSocket" in failed[0]["REASON"]
        assert State.RECONNECTING in r.state_names()
        assert not r.logs.events("session.degraded")  # backoff, not the slow config retry


@pytest.mark.asyncio
async def test_a_rollover_to_a_bad_url_fails_and_the_session_goes_on() -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    sim = SimConfig(max_duration_s=30.0, **QUIET)  # type: ignore[arg-type]
    async with rig(
        sim,
        conversation__rollover=True,
        conversation__max_duration_s=30,
        conversation__rollover_margin_s=29.0,
    ) as r:
        first = await r.sim.wait_connection(1)
        await r.wait_state(State.LISTENING)
        bad = with_changes(r.sup._cfg, **{"agent.api_base": "https://"})
        r.sup.update_config(bad)  # a reload: the next session, here the rollover's, uses it
        await r.wait(lambda: r.logs.events("rollover.failed"), timeout=10)
        [failed] = r.logs.events("rollover.failed")
        assert "agent.api_base is not usable" in failed["REASON"]
        assert runner_alive(r) and not first.closed
        assert r.sup.state is State.LISTENING
    gc.collect()  # a task that died with an exception nobody retrieved is reported here
    loop.set_exception_handler(None)
    assert errors == []


class BrokenSecret(Secret):
    """A key whose reveal() fails: stands for a bug somewhere on the connect path."""

    def reveal(self) -> str:
        raise RuntimeError("bug on the connect path")


@pytest.mark.asyncio
async def test_an_unexpected_exception_is_logged_with_its_type_and_the_supervisor_backs_off() -> (
    None
):
    async with rig(SimConfig(**QUIET), agent__requires_auth=True) as r:  # type: ignore[arg-type]
        r.sup._api_key = BrokenSecret("x")
        await r.wait(lambda: len(r.logs.events("supervisor.error")) >= 2, timeout=10)
        assert runner_alive(r)
        err = r.logs.events("supervisor.error")[0]
        assert err["ERROR"] == "RuntimeError" and "bug on the connect path" in err["_msg"]
        record = next(x for x in r.logs.records if x.getMessage().startswith("supervisor.error"))
        assert record.exc_info is not None  # the traceback is in the journal
        assert State.RECONNECTING in r.state_names()
        r.sup._api_key = Secret("sk_test")  # the bug gone: the conversation comes back
        await r.sim.wait_connection(1, timeout=10)
        await r.wait_state(State.LISTENING)
