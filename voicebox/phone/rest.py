"""Twilio's REST API through the `twilio` package: complete a call, place an outbound call.

The client is built from the `phone:` config (account, region, edge, api_base) and the auth
token; its calls are blocking (requests), so they run in a worker thread. Failures are retried a
few times and then reported as `RestError`, never raised as library exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from voicebox.config import PhoneConfig, Secret
from voicebox.logs import event

log = logging.getLogger("voicebox.phone")

ATTEMPTS = 3
RETRY_S = 0.5


class RestError(Exception):
    """A REST request that failed after its retries; the message says what and why."""


def make_client(phone: PhoneConfig, token: Secret) -> Client:
    client = Client(phone.account_sid, token.reveal(), region=phone.region, edge=phone.edge)
    client.api.base_url = phone.api_base.rstrip("/")
    return client


def _why(exc: Exception) -> str:
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status} code {exc.code}: {exc.msg}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


async def _retrying(what: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """fn(**kwargs) in a thread, retried on network errors, 429 and 5xx; RestError at the end."""
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as exc:  # TwilioRestException, requests' connection errors, timeouts
            last = _why(exc)
            event(log, "rest.failed", logging.WARNING, request=what, attempt=attempt, error=last)
            status = exc.status if isinstance(exc, TwilioRestException) else 0
            if 400 <= status < 500 and status != 429:  # the request itself is wrong
                break
        if attempt < ATTEMPTS:
            await asyncio.sleep(RETRY_S * attempt)
    raise RestError(f"{what}: {last}")


async def complete_call(client: Client, call_sid: str) -> str:
    """`calls(sid).update(status="completed")`; returns the call's status as Twilio reports it."""
    call = await _retrying("complete_call", client.calls(call_sid).update, status="completed")
    return str(getattr(call, "status", "") or "")


async def create_call(
    client: Client, to: str, from_: str, url: str, status_callback: str
) -> tuple[str, str]:
    """An outbound call whose TwiML comes from our own webhook; returns (call sid, status)."""
    call = await _retrying(
        "create_call",
        client.calls.create,
        to=to,
        from_=from_,
        url=url,
        status_callback=status_callback,
        status_callback_event=["completed"],
    )
    return str(getattr(call, "sid", "")), str(getattr(call, "status", "") or "")
