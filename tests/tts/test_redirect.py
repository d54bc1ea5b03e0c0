"""The TTS socket's API key never follows a redirect: two real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from voicebox.config import Config, Secret
from voicebox.tts import TtsError, synthesize

KEY = "sk_tts_redirect_0123456789"


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.asyncio
async def test_a_redirect_of_the_tts_handshake_is_refused_and_the_key_stays() -> None:
    seen: list[dict[str, str]] = []  # the headers of every request the other origin got

    class Other(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # websockets reads nothing older

        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with http_server(Other) as other:

        class Redirecting(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(302)
                self.send_header("Location", f"ws://127.0.0.1:{other}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        with http_server(Redirecting) as port, pytest.raises(TtsError) as err:
            await synthesize(
                "Ready.", Config().tts, f"http://127.0.0.1:{port}", Secret(KEY), "pcm_16000"
            )
    assert "302" in str(err.value)
    assert seen == []  # the key (and the request) never reached the other origin
