"""A loopback Twilio for tests, the bench and `make demo-phone`: REST API and the Media Stream side.

REST (account auth, HTTP Basic with the account SID and auth token):

    POST /2010-04-01/Accounts/{AccountSid}/Calls.json           create (To, From, Url, ...)
    POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json update (Status=completed)

Point the `twilio` client at it with `client.api.base_url = fake.api_base` (phone.api_base).
A call (`incoming_call`, or a created one once "answered") posts the voice webhook signed with
X-Twilio-Signature, reads the TwiML, and for <Connect><Stream> dials the stream URL and plays
Twilio's side in real time: `connected`, `start` (the <Parameter>s as customParameters), a `media`
frame every 20 ms (the caller's queued speech, else silence), and a playout of what comes back:
one 20 ms frame per tick, marks echoed once the audio before them has played, `clear` empties the
buffer (its marks are echoed at once). Everything is recorded on the `FakeCall`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiohttp import web
from twilio.request_validator import RequestValidator

from voicebox.audio.formats import ulaw_encode
from voicebox.logs import event

log = logging.getLogger("voicebox.twilio_fake")

FRAME = 160  # 20 ms of mu-law at 8 kHz
TICK_S = 0.02
SILENCE = b"\xff" * FRAME
CALLS_PATH = "/2010-04-01/Accounts/{account}/Calls.json"
CALL_PATH = "/2010-04-01/Accounts/{account}/Calls/{sid}.json"


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class FakeCall:
    """One call as Twilio sees it; tests read these records."""

    sid: str
    from_: str
    to: str
    direction: str
    status: str = "ringing"
    status_callback: str | None = None
    twiml: str = ""
    rejected: str | None = None  # <Reject reason>
    webhook_status: int | None = None
    stream_url: str | None = None
    stream_sid: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    stream_close_code: int | None = None  # the close code the bridge sent, if it closed first
    media_in: int = 0  # media frames received from the bridge
    heard: list[tuple[float, int, bytes]] = field(default_factory=list)  # (time, seq, frame)
    marks_received: list[str] = field(default_factory=list)
    marks_echoed: list[tuple[str, float]] = field(default_factory=list)
    clears: list[tuple[float, int]] = field(default_factory=list)  # (time, frames dropped)
    cleared_before_seq: int = 0  # frames with seq below this were buffered when clear came
    stale_heard: int = 0  # frames heard after a clear that came before it (must stay 0)
    sent_frames: int = 0  # caller frames sent
    speech_frames: int = 0  # of which caller speech
    completed_by_rest_at: float | None = None
    hung_up_at: float | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # the stream is over
    _say: deque[bytes] = field(default_factory=deque)
    _end: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: aiohttp.ClientWebSocketResponse | None = None

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame on the stream as Twilio (malformed-input tests)."""
        assert self._ws is not None
        if isinstance(frame, bytes):
            await self._ws.send_bytes(frame)
        else:
            await self._ws.send_str(frame)

    def say(self, samples: npt.NDArray[np.int16]) -> float:
        """Queue the caller's speech (int16 at 8 kHz), sent in real time; returns its seconds."""
        data = ulaw_encode(samples)
        data += b"\xff" * (-len(data) % FRAME)
        for i in range(0, len(data), FRAME):
            self._say.append(data[i : i + FRAME])
        return len(data) / 8000

    @property
    def speaking(self) -> bool:
        return bool(self._say)

    def heard_s(self, after: float = 0.0) -> float:
        """Seconds of non-silent agent audio played to the caller (after monotonic `after`)."""
        return sum(1 for t, _, f in self.heard if t >= after and f != SILENCE) * TICK_S

    def hang_up(self) -> None:
        """The caller hangs up: `stop`, then the socket closes."""
        if self.hung_up_at is None and self.completed_by_rest_at is None:
            self.hung_up_at = time.monotonic()
        self._end.set()

    def resource(self, account: str) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": account,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "direction": self.direction,
            "api_version": "2010-04-01",
            "uri": CALL_PATH.format(account=account, sid=self.sid),
        }


class TwilioFake:
    """The fake; `await start()` then use `api_base` and `incoming_call()`."""

    def __init__(self, account_sid: str, auth_token: str, host: str = "127.0.0.1") -> None:
        self.account_sid = account_sid
        self._token = auth_token
        self._signer = RequestValidator(auth_token)
        self.host = host
        self.port = 0
        self.calls: dict[str, FakeCall] = {}
        self.rest_log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.on_event: Callable[[str], None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls.json", self._create)
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{sid}.json", self._update)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        self._session = aiohttp.ClientSession()
        return self.port

    async def stop(self) -> None:
        for call in self.calls.values():
            call._end.set()
        for task in list(self._tasks):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.shield(task)
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TwilioFake:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed = self._changed
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await changed.wait()

    def _event(self, name: str, **fields: Any) -> None:
        event(log, name, **fields)
        if self.on_event is not None:
            parts = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            self.on_event(f"{name} {parts}".strip())
        self.notify()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- calls ---------------------------------------------------------------------------------

    async def incoming_call(
        self,
        voice_url: str,
        from_: str = "+15550100001",
        to: str = "+15550100002",
        status_callback: str | None = None,
    ) -> FakeCall:
        """A caller dials in: the webhook is posted (signed) and the TwiML followed."""
        call = FakeCall(_sid("CA"), from_, to, "inbound", status_callback=status_callback)
        self.calls[call.sid] = call
        await self._answer(call, voice_url)
        return call

    async def _answer(self, call: FakeCall, voice_url: str) -> None:
        params = {
            "CallSid": call.sid,
            "AccountSid": self.account_sid,
            "From": call.from_,
            "To": call.to,
            "CallStatus": "ringing" if call.direction == "inbound" else "in-progress",
            "Direction": call.direction,
            "ApiVersion": "2010-04-01",
        }
        status, body = await self.post_signed(voice_url, params)
        call.webhook_status = status
        call.twiml = body
        self._event("twilio.webhook", call_sid=call.sid, status=status)
        if status != 200:
            call.status = "failed"
            call.stopped.set()
            return
        root = ET.fromstring(body)
        reject = root.find("Reject")
        if reject is not None:
            call.rejected = reject.get("reason", "rejected")
            call.status = "busy" if call.rejected == "busy" else "failed"
            call.stopped.set()
            self._event("twilio.rejected", call_sid=call.sid, reason=call.rejected)
            return
        stream = root.find("Connect/Stream")
        if stream is None:
            call.status = "completed"
            call.stopped.set()
            return
        call.stream_url = stream.get("url")
        call.parameters = {
            p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")
        }
        call.status = "in-progress"
        ready = asyncio.Event()
        self._spawn(self._stream(call, ready))
        await ready.wait()

    async def post_signed(
        self, url: str, params: dict[str, str], signature: str | None = None
    ) -> tuple[int, str]:
        """POST a form as Twilio does; `signature` overrides the computed one (tests)."""
        assert self._session is not None
        sig = self._signer.compute_signature(url, params) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        async with self._session.post(url, data=params, headers=headers) as resp:
            return resp.status, await resp.text()

    # --- the Media Stream (Twilio's side) ---------------------------------------------------

    async def _stream(self, call: FakeCall, ready: asyncio.Event) -> None:
        assert self._session is not None and call.stream_url is not None
        call.stream_sid = _sid("MZ")
        seq = itertools.count(1)
        try:
            ws = await self._session.ws_connect(call.stream_url, autoclose=True)
        except aiohttp.ClientError as exc:
            self._event("twilio.stream_failed", call_sid=call.sid, error=str(exc))
            call.stopped.set()
            ready.set()
            return
        call._ws = ws
        self._event("twilio.stream_connected", call_sid=call.sid, stream_sid=call.stream_sid)
        ready.set()
        playout: deque[tuple[str, int, bytes]] = (
            deque()
        )  # ("media", seq, frame) | ("mark", 0, name)
        try:
            await ws.send_str(
                json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            )
            start = {
                "event": "start",
                "sequenceNumber": str(next(seq)),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": call.stream_sid,
                    "callSid": call.sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": call.parameters,
                },
                "streamSid": call.stream_sid,
            }
            await ws.send_str(json.dumps(start))
            reader = asyncio.create_task(self._read(call, ws, playout))
            ticker = asyncio.create_task(self._tick(call, ws, playout, seq))
            end = asyncio.create_task(call._end.wait())
            await asyncio.wait({reader, ticker, end}, return_when=asyncio.FIRST_COMPLETED)
            ticker.cancel()
            if not ws.closed:
                stop = {
                    "event": "stop",
                    "sequenceNumber": str(next(seq)),
                    "streamSid": call.stream_sid,
                    "stop": {"accountSid": self.account_sid, "callSid": call.sid},
                }
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(json.dumps(stop))
                await ws.close()
            end.cancel()
            reader.cancel()
            await asyncio.gather(reader, ticker, end, return_exceptions=True)
        finally:
            if not ws.closed:
                await ws.close()
            if call.status == "in-progress":
                call.status = "completed"
            call.stopped.set()
            self._event(
                "twilio.stream_ended",
                call_sid=call.sid,
                close_code=call.stream_close_code,
                heard_s=round(call.heard_s(), 2),
            )
            if call.status_callback and call.status == "completed":
                params = {
                    "CallSid": call.sid,
                    "AccountSid": self.account_sid,
                    "CallStatus": "completed",
                    "Direction": call.direction,
                }
                with contextlib.suppress(aiohttp.ClientError):
                    await self.post_signed(call.status_callback, params)

    async def _read(
        self,
        call: FakeCall,
        ws: aiohttp.ClientWebSocketResponse,
        playout: deque[tuple[str, int, bytes]],
    ) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kind = data.get("event")
            if kind == "media":
                call.media_in += 1
                frame = base64.b64decode(data["media"]["payload"])
                playout.append(("media", call.media_in, frame))
            elif kind == "mark":
                name = data["mark"]["name"]
                call.marks_received.append(name)
                playout.append(("mark", 0, name.encode()))
            elif kind == "clear":
                dropped = sum(1 for k, _, _ in playout if k == "media")
                call.cleared_before_seq = call.media_in + 1
                call.clears.append((time.monotonic(), dropped))
                marks = [p for k, _, p in playout if k == "mark"]
                playout.clear()
                for name in marks:  # Twilio answers the marks of the discarded audio at once
                    await self._echo_mark(call, ws, name.decode())
                self._event("twilio.clear", call_sid=call.sid, dropped_frames=dropped)
        if ws.close_code is not None and ws.close_code != 1000:
            call.stream_close_code = ws.close_code
        elif ws.close_code == 1000:
            call.stream_close_code = 1000

    async def _echo_mark(
        self, call: FakeCall, ws: aiohttp.ClientWebSocketResponse, name: str
    ) -> None:
        call.marks_echoed.append((name, time.monotonic()))
        msg = {"event": "mark", "streamSid": call.stream_sid, "mark": {"name": name}}
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps(msg))
        self.notify()

    async def _tick(
        self,
        call: FakeCall,
        ws: aiohttp.ClientWebSocketResponse,
        playout: deque[tuple[str, int, bytes]],
        seq: Any,
    ) -> None:
        """Every 20 ms: one caller frame out, one agent frame played (marks echoed when reached)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        chunk = 0
        was_speaking = False
        while True:
            next_at += TICK_S
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            now = time.monotonic()
            # The frame started last tick has played: marks right behind it are answered.
            while playout and playout[0][0] == "mark":
                await self._echo_mark(call, ws, playout.popleft()[2].decode())
            if playout:
                _, frame_seq, frame = playout.popleft()
                if frame_seq < call.cleared_before_seq:
                    call.stale_heard += 1
                call.heard.append((now, frame_seq, frame))
            speech = call._say.popleft() if call._say else None
            if speech is not None and not was_speaking:
                self._event("twilio.caller_speaks", call_sid=call.sid)
            was_speaking = speech is not None
            chunk += 1
            call.sent_frames += 1
            call.speech_frames += speech is not None
            payload = base64.b64encode(speech or SILENCE).decode()
            msg = {
                "event": "media",
                "sequenceNumber": str(next(seq)),
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(chunk * 20),
                    "payload": payload,
                },
                "streamSid": call.stream_sid,
            }
            try:
                await ws.send_str(json.dumps(msg))
            except (ConnectionError, RuntimeError):
                return

    # --- REST ------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        try:
            basic = aiohttp.BasicAuth.decode(auth)
        except ValueError:
            return False
        return (
            basic.login == self.account_sid
            and basic.password == self._token
            and request.match_info["account"] == self.account_sid
        )

    def _error(self, request: web.Request, status: int, code: int, message: str) -> web.Response:
        self.rest_log.append((request.method, request.path, status))
        body = {"code": code, "message": message, "more_info": "", "status": status}
        return web.json_response(body, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(request, 401, 20003, "Authenticate")
        form = await request.post()
        to, from_, url = (
            str(form.get("To", "")),
            str(form.get("From", "")),
            str(form.get("Url", "")),
        )
        if not (to and from_ and url):
            return self._error(request, 400, 21201, "To, From and Url are required")
        callback = form.get("StatusCallback")
        call = FakeCall(
            _sid("CA"), from_, to, "outbound-api", "queued", str(callback) if callback else None
        )
        self.calls[call.sid] = call
        self.rest_log.append((request.method, request.path, 201))
        self._event("twilio.rest", request="calls.create", call_sid=call.sid, to=to)
        self._spawn(self._answer(call, url))  # the callee picks up
        return web.json_response(call.resource(self.account_sid), status=201)

    async def _update(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._error(request, 401, 20003, "Authenticate")
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return self._error(request, 404, 20404, "The requested resource was not found")
        form = await request.post()
        status = str(form.get("Status", ""))
        if status == "completed":
            if call.completed_by_rest_at is None and call.hung_up_at is None:
                call.completed_by_rest_at = time.monotonic()
            call.status = "completed"
            call._end.set()
        self.rest_log.append((request.method, request.path, 200))
        self._event("twilio.rest", request="calls.update", call_sid=call.sid, status=status)
        return web.json_response(call.resource(self.account_sid))
