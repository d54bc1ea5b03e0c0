"""`voicebox phone`: the webhook and Media Stream server; `voicebox call`: an outbound call.

One aiohttp server (the `twilio` package depends on aiohttp already, and the websockets
package cannot serve a POST with a body) on phone.listen_host:listen_port:

    POST /twilio/voice   incoming (or answered outbound) call: X-Twilio-Signature checked over
                         phone.public_url + path; TwiML <Connect><Stream> with a one-time token,
                         or <Reject reason="busy"/> at phone.max_calls
    GET  /twilio/media   the bidirectional Media Stream (WebSocket); unknown token -> close 1008
    POST /twilio/status  call status callback (signed): a finished call ends its conversation

The status socket `$RUNTIME_DIRECTORY/phone.sock` (or `<paths.runtime_dir>/phone.sock`) serves
the snapshot with the active calls (`voicebox status --socket /run/voicebox-phone/phone.sock`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import WSMsgType, web
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, VoiceResponse

from voicebox import __version__, config, logs
from voicebox.config import EX_CONFIG, Config, ConfigError, Secret
from voicebox.phone import context, media, rest
from voicebox.phone.call import PhoneCall
from voicebox.status import MetricsFile, StatusServer, write_metrics_periodically
from voicebox.systemd import Notifier

log = logging.getLogger("voicebox.phone")

VOICE_PATH = "/twilio/voice"
MEDIA_PATH = "/twilio/media"
STATUS_PATH = "/twilio/status"
TOKEN_TTL_S = 30.0  # a token not used by a stream this soon is forgotten
START_TIMEOUT_S = 10.0  # connected + start must come this soon after the WebSocket opens
ENDED_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
STATUS_SOCKET = "phone.sock"
# A stop (TimeoutStopSec=30s): calls get STOP_CALLS_S to complete, then handlers SHUTDOWN_S.
STOP_CALLS_S = 20.0
SHUTDOWN_S = 3.0
COUNTERS = (
    "calls",
    "busy",
    "webhooks_rejected",
    "unknown_tokens",
    "malformed",
    "completed_by_agent",
    "ended_by_caller",
    "failed",
)


@dataclass
class _Pending:
    call_sid: str
    expires: float


class PhoneServer:
    """The bridge: answers webhooks, accepts Media Streams, runs one PhoneCall per stream."""

    def __init__(
        self, cfg: Config, token: Secret, api_key: Secret | None, client: Client | None = None
    ) -> None:
        self.cfg = cfg
        self._validator = RequestValidator(token.reveal())
        self._api_key = api_key
        self.client = client if client is not None else rest.make_client(cfg.phone, token)
        self._pending: dict[str, _Pending] = {}
        self.calls: dict[str, PhoneCall] = {}
        self._live_tokens: dict[str, str] = {}  # call sid -> the (spent) token of its stream
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: Counter[str] = Counter(dict.fromkeys(COUNTERS, 0))
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.started = time.monotonic()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post(VOICE_PATH, self._voice)
        app.router.add_post(STATUS_PATH, self._status)
        app.router.add_get(MEDIA_PATH, self._media)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S
        )
        await self._runner.setup()
        phone = self.cfg.phone
        site = web.TCPSite(self._runner, phone.listen_host, phone.listen_port)
        await site.start()
        server = site._server  # the bound socket: the port when listen_port is 0
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else phone.listen_port
        logs.event(
            log,
            "phone.listening",
            host=phone.listen_host,
            port=self.port,
            public_url=phone.public_url,
            max_calls=phone.max_calls,
        )
        return self.port

    async def stop(self) -> None:
        """Close every call's session and complete the call (REST), then stop listening.

        Calls not over within STOP_CALLS_S (the REST deadline and Twilio's `stop` fit in it)
        are abandoned: logged, their handlers cancelled by the runner's cleanup.
        """
        calls = list(self.calls.values())
        for call in calls:
            call.shut_down()
        if calls:
            waits = [asyncio.ensure_future(call.closed.wait()) for call in calls]
            await asyncio.wait(waits, timeout=STOP_CALLS_S)
            for wait in waits:
                wait.cancel()
        for call in calls:
            if not call.closed.is_set():
                logs.event(log, "call.abandoned", logging.WARNING, call_sid=call.call_sid)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await rest.close_client(self.client)
        logs.event(log, "phone.stopped", calls=self.counters["calls"])

    @property
    def active_calls(self) -> int:
        self._expire()
        return len(self.calls) + len(self._pending)

    def snapshot(self) -> dict[str, Any]:
        """For the status socket: counts, counters and one section per call."""
        active = self.active_calls
        return {
            **self.metrics(),
            "state": f"{active} active call{'' if active == 1 else 's'}",
            "calls": {sid: call.snapshot() for sid, call in self.calls.items()},
        }

    def metrics(self) -> dict[str, Any]:
        """For the metrics textfile: numbers only, no per-call labels."""
        return {
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "active_calls": self.active_calls,
            "max_calls": self.cfg.phone.max_calls,
            "counters": {f"phone_{k}": v for k, v in self.counters.items()},
        }

    # --- URLs ----------------------------------------------------------------------------------

    def public(self, path: str) -> str:
        return self.cfg.phone.public_url.rstrip("/") + path

    def stream_url(self) -> str:
        parts = urlsplit(self.public(MEDIA_PATH))
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path, "", ""))

    # --- HTTP ----------------------------------------------------------------------------------

    async def _signed(self, request: web.Request) -> dict[str, str] | None:
        """The form if X-Twilio-Signature matches it over the public URL; else None (logged)."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        signature = request.headers.get("X-Twilio-Signature", "")
        url = self.public(request.path_qs)
        if signature and self._validator.validate(url, form, signature):
            return form
        self.counters["webhooks_rejected"] += 1
        logs.event(
            log,
            "webhook.rejected",
            logging.WARNING,
            path=request.path,
            reason="bad signature" if signature else "no signature",
            remote=request.remote,
            call_sid=form.get("CallSid") or None,
        )
        return None

    async def _voice(self, request: web.Request) -> web.Response:
        form = await self._signed(request)
        if form is None:
            return web.Response(status=403, text="invalid signature\n")
        call_sid = form.get("CallSid", "")
        response = VoiceResponse()
        if not call_sid:
            self.counters["webhooks_rejected"] += 1
            logs.event(
                log, "webhook.rejected", logging.WARNING, path=request.path, reason="no CallSid"
            )
            return web.Response(status=400, text="no CallSid\n")
        live = self.calls.get(call_sid)
        if live is not None:  # a retry or a replay for a live call: the same TwiML, no new slot
            logs.event(log, "call.webhook_repeated", call_sid=call_sid, stream_sid=live.stream_sid)
            return self._connect(self._live_tokens.get(call_sid, ""))
        retried = next((t for t, p in self._pending.items() if p.call_sid == call_sid), None)
        if retried is not None:  # Twilio retried the webhook: same call, same token, no new slot
            del self._pending[retried]
        if retried is None and self.active_calls >= self.cfg.phone.max_calls:
            self.counters["busy"] += 1
            logs.event(
                log,
                "call.busy",
                call_sid=call_sid,
                active_calls=self.active_calls,
                max_calls=self.cfg.phone.max_calls,
            )
            response.reject(reason="busy")
        else:
            token = retried or secrets.token_urlsafe(24)
            self._pending[token] = _Pending(call_sid, time.monotonic() + TOKEN_TTL_S)
            logs.event(
                log,
                "call.incoming",
                call_sid=call_sid,
                direction=form.get("Direction") or None,
                active_calls=self.active_calls,
            )
            return self._connect(token)
        return web.Response(text=str(response), content_type="application/xml")

    def _connect(self, token: str) -> web.Response:
        """TwiML: <Connect><Stream> to our Media Stream URL with the call's token."""
        response = VoiceResponse()
        connect = Connect()
        stream = connect.stream(url=self.stream_url())
        stream.parameter(name="token", value=token)
        response.append(connect)
        return web.Response(text=str(response), content_type="application/xml")

    async def _status(self, request: web.Request) -> web.Response:
        form = await self._signed(request)
        if form is None:
            return web.Response(status=403, text="invalid signature\n")
        call_sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
        logs.event(log, "call.status", call_sid=call_sid or None, status=status or None)
        call = self.calls.get(call_sid)
        if call is not None and status in ENDED_STATUSES:
            call.hang_up()
        if status in ENDED_STATUSES:
            for token, pending in list(self._pending.items()):
                if pending.call_sid == call_sid:
                    del self._pending[token]
        return web.Response(status=204)

    def _expire(self) -> None:
        now = time.monotonic()
        for token, pending in list(self._pending.items()):
            if pending.expires < now:
                del self._pending[token]
                logs.event(log, "call.token_expired", call_sid=pending.call_sid)

    # --- the Media Stream ----------------------------------------------------------------------

    async def _media(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20, autoping=True)
        await ws.prepare(request)
        start = await self._await_start(ws)
        if start is None:
            return ws
        token = start.custom.get("token", "")
        pending = self._pending.pop(token, None)
        reason = ""
        if pending is None or pending.call_sid != start.call_sid:
            reason = "unknown token"
        elif pending.expires < time.monotonic():
            reason = "expired token"
        elif start.call_sid in self.calls:
            reason = "call already streaming"
        if reason:
            self.counters["unknown_tokens"] += 1
            logs.event(
                log,
                "stream.rejected",
                logging.WARNING,
                call_sid=start.call_sid,
                stream_sid=start.stream_sid,
                reason=reason,
            )
            await ws.close(code=1008, message=reason.encode())
            return ws
        if start.encoding != "audio/x-mulaw" or start.rate != 8000:
            logs.event(
                log,
                "stream.format",
                logging.WARNING,
                call_sid=start.call_sid,
                encoding=start.encoding,
                rate=start.rate,
            )
        call = PhoneCall(self.cfg, self._api_key, start, ws, self._complete, self.counters)
        self.counters["calls"] += 1
        self.calls[start.call_sid] = call
        self._live_tokens[start.call_sid] = token
        try:
            await call.run()
        finally:
            self.calls.pop(start.call_sid, None)
            self._live_tokens.pop(start.call_sid, None)
        return ws

    async def _await_start(self, ws: web.WebSocketResponse) -> media.Start | None:
        """Read `connected` and `start`; None (socket closed with 1008) if they do not come."""
        bad = 0
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                async for msg in ws:
                    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        continue
                    ev = media.parse(msg.data)
                    if isinstance(ev, media.Start):
                        return ev
                    if isinstance(ev, media.Malformed | media.Unknown):
                        self.counters["malformed"] += 1
                        bad += 1
                        if bad == 1:  # one line per socket: before `start` anyone can send
                            logs.event(
                                log,
                                "stream.malformed",
                                logging.WARNING,
                                before_start=True,
                                kind=ev.kind
                                if isinstance(ev, media.Malformed)
                                else f"unknown:{ev.event}",
                                detail=ev.detail if isinstance(ev, media.Malformed) else None,
                            )
        except TimeoutError:
            pass
        self.counters["unknown_tokens"] += 1
        logs.event(log, "stream.rejected", logging.WARNING, reason="no start message")
        await ws.close(code=1008, message=b"no start")
        return None

    async def _complete(self, call_sid: str) -> str:
        return await rest.complete_call(self.client, call_sid)


# --- commands ------------------------------------------------------------------------------------


def quiet_twilio_logs() -> None:
    """The twilio client logs every request's headers at INFO: keep only its warnings."""
    logging.getLogger("twilio").setLevel(logging.WARNING)


def _check(cfg: Config, token: Secret | None) -> list[str]:
    phone = cfg.phone
    problems = []
    if not phone.enabled:
        problems.append("phone.enabled: false (set it to true to serve phone calls)")
    if not phone.public_url:
        problems.append("phone.public_url: required (the https URL Twilio reaches this server at)")
    if not phone.account_sid:
        problems.append("phone.account_sid: required (your Twilio account SID, AC...)")
    if not cfg.agent.agent_id:
        problems.append("agent.agent_id: required to run (the id of your ElevenLabs agent)")
    if token is None:
        problems.append(
            f"no Twilio auth token: set the systemd credential '{config.TWILIO_CREDENTIAL_NAME}' "
            f"or ${config.TWILIO_TOKEN_ENV}"
        )
    return problems


def _load(path: str) -> tuple[Config, Secret | None, Secret | None] | int:
    try:
        cfg = config.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    logs.setup(cfg.logging.level)
    quiet_twilio_logs()
    context.install()
    token = config.load_twilio_token()
    api_key = config.load_api_key(cfg)
    for secret in (token, api_key):
        if secret is not None:
            logs.register_secret(secret.reveal())
    return cfg, token, api_key


async def serve_until_signal(cfg: Config, token: Secret, api_key: Secret | None) -> int:
    server = PhoneServer(cfg, token, api_key)
    try:
        await server.start()
    except OSError as exc:
        logs.event(log, "phone.start_failed", logging.ERROR, error=exc.strerror or str(exc))
        return 1
    # systemd's RuntimeDirectory= of voicebox-phone.service, else paths.runtime_dir.
    runtime = os.environ.get("RUNTIME_DIRECTORY") or cfg.paths.runtime_dir
    status = StatusServer(Path(runtime) / STATUS_SOCKET, server.snapshot)
    await status.start()
    metrics_task = None
    if (
        cfg.monitor.metrics_path
    ):  # beside the appliance's file: voicebox.prom -> voicebox_phone.prom
        daemon_file = Path(cfg.monitor.metrics_path)
        metrics = MetricsFile(
            daemon_file.with_name(f"{daemon_file.stem}_phone{daemon_file.suffix}")
        )
        metrics_task = asyncio.create_task(
            write_metrics_periodically(metrics, server.metrics, cfg.monitor.metrics_interval_s)
        )
    notifier = Notifier()
    notifier.ready(f"serving phone calls on port {server.port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watchdog = notifier.watchdog_interval_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(watchdog or 3600.0):
                await stop.wait()
        if watchdog:
            notifier.watchdog()
            notifier.status(f"{server.active_calls} active calls")
    notifier.stopping()
    if metrics_task is not None:
        metrics_task.cancel()
    await server.stop()
    await status.stop()
    return 0


def main_phone(args: argparse.Namespace) -> int:
    """`voicebox phone`: serve phone calls until SIGTERM."""
    logs.setup("info")
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    cfg, token, api_key = loaded
    problems = _check(cfg, token)
    if problems:
        for problem in problems:
            logs.event(log, "config.invalid", logging.ERROR, problem=problem)
        return EX_CONFIG
    assert token is not None
    return asyncio.run(serve_until_signal(cfg, token, api_key))


async def place_call(cfg: Config, token: Secret, to: str) -> tuple[str, str]:
    """An outbound call whose answer fetches our own webhook (so it opens the same stream)."""
    client = rest.make_client(cfg.phone, token)
    base = cfg.phone.public_url.rstrip("/")
    try:
        return await rest.create_call(
            client, to, cfg.phone.from_number, base + VOICE_PATH, base + STATUS_PATH
        )
    finally:
        await rest.close_client(client)


def main_call(args: argparse.Namespace) -> int:
    """`voicebox call +E164`: ask Twilio to call a number; `voicebox phone` takes the call."""
    logs.setup("warning")
    number = args.number.strip()
    if not (number.startswith("+") and number[1:].isdigit() and 8 <= len(number) <= 16):
        print(
            f"voicebox call: {number!r} is not an E.164 number (+ and 7-15 digits)", file=sys.stderr
        )
        return 2
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    cfg, token, _ = loaded
    problems = [p for p in _check(cfg, token) if not p.startswith("agent.")]
    if not cfg.phone.from_number:
        problems.append("phone.from_number: required for outbound calls (E.164 caller id)")
    if problems:
        print("cannot place a call:\n" + "\n".join(problems), file=sys.stderr)
        return EX_CONFIG
    assert token is not None
    try:
        sid, status = asyncio.run(place_call(cfg, token, number))
    except rest.RestError as exc:
        print(f"voicebox call: {exc}", file=sys.stderr)
        return 1
    print(f"call {sid} to {number}: {status}")
    return 0
