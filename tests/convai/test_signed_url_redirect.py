"""The API key never follows a redirect: two real HTTP servers on 127.0.0.1 (two origins)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.convai.rig import rig
from voicebox.simulator.server import SimConfig
from voicebox.state import State

KEY = "sk_redirect_test_0123456789"


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_of_the_signed_url_fetch_is_refused_and_the_key_stays(
    status: int,
) -> None:
    seen: list[dict[str, str]] = []  # the headers of every request the other origin got

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"signed_url": "ws://127.0.0.1:9/v1/convai/conversation"}')

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Other) as other:

        class Redirecting(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Location", other + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        with http_server(Redirecting) as base:
            sim = SimConfig(first_message="", ping_interval_s=0.3)
            async with rig(sim, api_key=KEY, agent__requires_auth=True, agent__api_base=base) as r:
                await r.wait_state(State.DEGRADED)
                [degraded] = r.logs.events("session.degraded")
                assert f"HTTP {status}: redirect refused" in degraded["CAUSE"]
    assert not [h for h in seen if any(k.lower() == "xi-api-key" for k in h)]
    assert seen == []  # not even followed without the key
