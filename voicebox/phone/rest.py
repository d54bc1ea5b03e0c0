"""Twilio's REST API through the `twilio` package: complete a call, place an outbound call.

The client is built from the `phone:` config (account, region, edge, api_base) and the auth
token over twilio's aiohttp client, so a request can be cancelled: every attempt has a total
bound (connect, send and the whole answer), and retries on network errors, timeouts, 429 and 5xx
back off inside one deadline per request. What still fails is reported as `RestError`, never
raised as a library exception. Close the client with `close_client` when done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from voicebox.config import PhoneConfig, Secret
from voicebox.logs import event

log = logging.getLogger("voicebox.phone")

ATTEMPT_S = 5.0  # one attempt: connect, request and the whole answer
DEADLINE_S = 12.0  # one request with its retries; a stop (TimeoutStopSec=30s) fits it
RETRY_S = 0.5  # the first backoff, doubled after each attempt
RETRY_MAX_S = 4.0
MIN_ATTEMPT_S = 1.0  # an attempt with less time left than this is not started


class RestError(Exception):
    """A REST request that failed after its retries; the message says what and why."""


def make_client(phone: PhoneConfig, token: Secret) -> Client:
    """A client over aiohttp (call it inside the event loop; close it with close_client)."""
    client = Client(
        phone.account_sid,
        token.reveal(),
        region=phone.region,
        edge=phone.edge,
        http_client=AsyncTwilioHttpClient(),
    )
    client.api.base_url = phone.api_base.rstrip("/")
    return client


async def close_client(client: Client) -> None:
    http = client.http_client
    if isinstance(http, AsyncTwilioHttpClient):
        await http.close()


def retry_delay(attempt: int, status: int, remaining_s: float) -> float | None:
    """The wait before attempt `attempt + 1`, or None to give up.

    `status` is the failed attempt's HTTP status (0: no answer or a network error) and
    `remaining_s` what is left of the request's deadline.
    """
    if 400 <= status < 500 and status != 429:  # the request itself is wrong
        return None
    delay = min(RETRY_MAX_S, RETRY_S * 2.0 ** (attempt - 1))
    if remaining_s - delay < MIN_ATTEMPT_S:
        return None
    return delay


def _why(exc: BaseException, bound_s: float) -> str:
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status} code {exc.code}: {exc.msg}"[:300]
    if isinstance(exc, TimeoutError):
        return f"no answer in {bound_s:.1f} s"
    return f"{type(exc).__name__}: {exc}"[:300]


async def _retrying(what: str, fn: Callable[..., Awaitable[Any]], /, **kwargs: Any) -> Any:
    """await fn(**kwargs), each attempt bounded, retried inside DEADLINE_S; RestError at the end."""
    deadline = time.monotonic() + DEADLINE_S
    attempt = 0
    while True:
        attempt += 1
        bound = min(ATTEMPT_S, deadline - time.monotonic())
        try:
            async with asyncio.timeout(bound):
                return await fn(**kwargs)
        except Exception as exc:  # TwilioRestException, aiohttp's errors, the attempt's bound
            last = _why(exc, bound)
            event(log, "rest.failed", logging.WARNING, request=what, attempt=attempt, error=last)
            status = exc.status if isinstance(exc, TwilioRestException) else 0
        delay = retry_delay(attempt, status, deadline - time.monotonic())
        if delay is None:
            raise RestError(f"{what}: {last}")
        await asyncio.sleep(delay)


async def complete_call(client: Client, call_sid: str) -> str:
    """`calls(sid).update(status="completed")`; returns the call's status as Twilio reports it."""
    call = await _retrying("complete_call", client.calls(call_sid).update_async, status="completed")
    return str(getattr(call, "status", "") or "")


async def create_call(
    client: Client, to: str, from_: str, url: str, status_callback: str
) -> tuple[str, str]:
    """An outbound call whose TwiML comes from our own webhook; returns (call sid, status)."""
    call = await _retrying(
        "create_call",
        client.calls.create_async,
        to=to,
        from_=from_,
        url=url,
        status_callback=status_callback,
        status_callback_event=["completed"],
    )
    return str(getattr(call, "sid", "")), str(getattr(call, "status", "") or "")
