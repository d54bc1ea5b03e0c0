"""REST checks against the agent service: key accepted, agent known, signed URL, overrides enabled.

Endpoints and fields (ElevenLabs API reference, Agents Platform):
  GET {api_base}/v1/convai/agents/{agent_id}                      (get agent, header xi-api-key)
  GET {api_base}/v1/convai/conversation/get-signed-url?agent_id=A (private agents)
The agent's `platform_settings.auth.enable_auth` says whether it is private, and
`platform_settings.overrides.conversation_config_override.<section>.<field>` (booleans, default
false) which per-conversation overrides it accepts; `platform_settings.overrides.
custom_llm_extra_body` gates the custom LLM body. Its client tools are in
`conversation_config.agent.prompt.tools` and, as workspace tools, `prompt.tool_ids`, each read at
  GET {api_base}/v1/convai/tools/{tool_id}                        (get tool: its tool_config)
The simulator serves the same paths and answers.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebox import agent_tools
from voicebox.config import Config, Secret
from voicebox.convai.connection import signed_url_request
from voicebox.doctor.report import Check, fail, ok, warn

AGENT_PATH = "/v1/convai/agents/"
TOOL_PATH = "/v1/convai/tools/"
MAX_TOOL_IDS = 32  # workspace tools read per doctor run; an agent with more is not fully checked
ADD_TOOLS = (
    "add the missing ones to the agent as client tools, as `voicebox tools` prints them "
    "(README: Telling the agent about the box's tools)"
)
MAX_TIMEOUT_S = 10.0
SETUP_HINT = "run `sudo voicebox setup`, or store the key with scripts/install.sh --api-key-file"

# config key in agent.overrides -> its permission flag under
# platform_settings.overrides.conversation_config_override
OVERRIDE_FLAGS: dict[str, tuple[str, ...]] = {
    "first_message": ("agent", "first_message"),
    "language": ("agent", "language"),
    "prompt": ("agent", "prompt", "prompt"),
    "voice_id": ("tts", "voice_id"),
    "max_duration_s": ("conversation", "max_duration_seconds"),
}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, parsed JSON body (or None) and headers (lower-case names)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Unreachable(Exception):
    """The request got no whole HTTP answer; the message says why (dns, refused, tls, timeout,
    a body cut short)."""


def agent_url(api_base: str, agent_id: str) -> str:
    return _rest_url(api_base, AGENT_PATH, agent_id)


def tool_url(api_base: str, tool_id: str) -> str:
    return _rest_url(api_base, TOOL_PATH, tool_id)


def _rest_url(api_base: str, prefix: str, item_id: str) -> str:
    parts = urllib.parse.urlsplit(api_base)
    path = parts.path.rstrip("/") + prefix + urllib.parse.quote(item_id, safe="")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def why_unreachable(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, socket.gaierror):
        return f"name lookup failed ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an answer: urllib would copy xi-api-key to whatever host it names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _read_body(resp: Any, limit: int, timeout: float, deadline: float) -> tuple[bytes, str]:
    """Up to `limit` bytes of the body before `deadline` (monotonic), and what went wrong: "" for
    a whole body, else why it is not (cut short, or still trickling at the deadline)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() >= deadline:
            return b"".join(chunks), f"no complete answer within {timeout:g} s"
        chunk = resp.read1(min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    missing = getattr(resp, "length", None)
    if size < limit and missing:
        return b"".join(chunks), f"the answer was cut short ({size} of {size + missing} bytes)"
    return b"".join(chunks), ""


def get_json(url: str, key: Secret | None, timeout: float) -> Answer:
    """GET url with the key in xi-api-key; any HTTP status is an Answer. No answer, or a success
    whose body is cut short or still coming `timeout` after the start (the read under way may
    add one socket timeout), is Unreachable."""
    headers = {"Accept": "application/json"}
    if key:
        headers["xi-api-key"] = key.reveal()
    req = urllib.request.Request(url, headers=headers)
    deadline = time.monotonic() + timeout
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            raw, problem = _read_body(resp, 1 << 20, timeout, deadline)
            status, hdrs = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        with exc:
            raw, problem = _read_body(exc.fp or io.BytesIO(), 1 << 16, timeout, deadline)
            status, hdrs = exc.code, exc.headers
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise Unreachable(why_unreachable(exc)) from None
    if problem and status < 400:  # an error status says enough without its body
        raise Unreachable(problem)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Answer(status, body, {k.lower(): v for k, v in hdrs.items()})


def _dig(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(part)
    return data


def overrides_sent(cfg: Config) -> list[str]:
    """The override names the daemon sends with this config (agent.overrides and the LLM body)."""
    o = cfg.agent.overrides
    sent = [name for name in OVERRIDE_FLAGS if getattr(o, name) not in (None, "", 0)]
    if o.first_message == "":
        sent.insert(0, "first_message")  # "" (no greeting) is still an override
    if cfg.agent.custom_llm_extra_body:
        sent.append("custom_llm_extra_body")
    return sent


def disabled_overrides(agent: Any, sent: list[str]) -> list[str] | None:
    """Which of `sent` the agent does not allow; None when its answer has no overrides settings."""
    allowed = _dig(agent, "platform_settings", "overrides")
    if not isinstance(allowed, Mapping):
        return None
    off = []
    for name in sent:
        if name == "custom_llm_extra_body":
            flag = allowed.get("custom_llm_extra_body")
        else:
            flag = _dig(allowed, "conversation_config_override", *OVERRIDE_FLAGS[name])
        if flag is not True:
            off.append(name)
    return off


def _message(body: Any) -> str:
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping):
        return str(detail.get("message") or detail.get("status") or "")
    return str(detail or "")


def check_service(cfg: Config, key: Secret | None, key_source: str) -> list[Check]:
    """The key, the agent id, the signed URL (private agents) and the overrides, over REST."""
    a = cfg.agent
    host = urllib.parse.urlsplit(a.api_base).netloc
    timeout = min(a.connect_timeout_s, MAX_TIMEOUT_S)
    out: list[Check] = []
    if not a.agent_id.strip():
        return [
            fail("agent", "agent.agent_id is not set", "set agent.agent_id (voicebox setup)"),
        ]
    if not key:
        if a.requires_auth:
            out.append(fail("api key", "no API key found (private agent)", SETUP_HINT))
        else:
            out.append(
                warn(
                    "api key",
                    "no API key found: the agent cannot be verified and announcements fall "
                    "back to tones",
                    SETUP_HINT,
                )
            )
        return out
    try:
        answer = get_json(agent_url(a.api_base, a.agent_id), key, timeout)
    except Unreachable as exc:
        return [
            fail(
                "service",
                f"cannot reach {host}: {exc}",
                "check the network and agent.api_base (see the network checks below)",
            )
        ]
    agent: Any = None
    if answer.status == 200:
        agent = answer.body
        name = _dig(agent, "name") or "(no name)"
        out.append(ok("api key", f"accepted by {host} (from {key_source})"))
        out.append(ok("agent", f"{a.agent_id} is {name!r}"))
    elif answer.status == 401:
        out.append(
            fail(
                "api key",
                f"rejected by {host} (HTTP 401: {_message(answer.body) or 'unauthorized'})",
                f"use a valid key (this one came from {key_source}): {SETUP_HINT}",
            )
        )
        out.append(warn("agent", "not checked (the key was rejected)", "fix the key first"))
        return out
    elif answer.status == 404:
        out.append(ok("api key", f"accepted by {host} (from {key_source})"))
        out.append(
            fail(
                "agent",
                f"no agent {a.agent_id!r} on {host} (HTTP 404)",
                "copy the agent id from the agent's page into agent.agent_id (voicebox setup)",
            )
        )
        return out
    elif answer.status == 403:
        out.append(
            warn(
                "api key",
                f"{host} answered 403: the key may not read agent settings "
                f"({_message(answer.body) or 'forbidden'})",
                "give the key the Agents read permission to let doctor check the agent",
            )
        )
    else:
        out.append(
            warn(
                "service",
                f"{host} answered HTTP {answer.status} to get-agent "
                f"({_message(answer.body) or 'no detail'})",
                "retry later; if it persists check the service status page",
            )
        )
    out.extend(_signed_url(cfg, key, agent, host, timeout))
    out.append(_overrides(cfg, agent))
    out.append(_tools(cfg, key, agent, timeout))
    return out


def _signed_url(cfg: Config, key: Secret, agent: Any, host: str, timeout: float) -> list[Check]:
    a = cfg.agent
    private = _dig(agent, "platform_settings", "auth", "enable_auth") is True
    if private and not a.requires_auth:
        return [
            fail(
                "private agent",
                "the agent requires authentication but agent.requires_auth is false",
                "set agent.requires_auth: true",
            )
        ]
    if not a.requires_auth:
        return [ok("private agent", "public agent: no signed URL needed")]
    try:
        answer = get_json(signed_url_request(a.api_base, a.agent_id), key, timeout)
    except Unreachable as exc:
        return [fail("signed url", f"cannot reach {host}: {exc}", "check the network")]
    signed = _dig(answer.body, "signed_url")
    if answer.status == 200 and isinstance(signed, str) and signed.startswith(("ws", "wss")):
        return [ok("signed url", "get-signed-url returned a conversation URL")]
    if answer.status == 401:
        return [fail("signed url", "get-signed-url: key rejected (HTTP 401)", SETUP_HINT)]
    if answer.status == 404:
        return [
            fail(
                "signed url",
                f"get-signed-url: no agent {a.agent_id!r} (HTTP 404)",
                "check agent.agent_id",
            )
        ]
    return [
        fail(
            "signed url",
            f"get-signed-url answered HTTP {answer.status} ({_message(answer.body) or 'no URL'})",
            "retry later; if it persists check the key's permissions",
        )
    ]


def _overrides(cfg: Config, agent: Any) -> Check:
    sent = overrides_sent(cfg)
    if not sent:
        return ok("overrides", "none sent")
    if agent is None:
        return warn(
            "overrides",
            f"sends {', '.join(sent)}; the agent's settings could not be read",
            "check in the agent's Security settings that these overrides are enabled",
        )
    off = disabled_overrides(agent, sent)
    if off is None:
        return warn(
            "overrides",
            f"sends {', '.join(sent)}; the agent's answer does not list its override settings",
            "check in the agent's Security settings that these overrides are enabled",
        )
    if off:
        return fail(
            "overrides",
            f"not enabled for this agent: {', '.join(off)} (the service ends such sessions)",
            "enable them in the agent's Security settings (Overrides), or remove them from "
            "agent.overrides",
        )
    return ok("overrides", f"enabled for this agent: {', '.join(sent)}")


def _read_tool_ids(
    cfg: Config, key: Secret, tool_ids: tuple[str, ...], timeout: float
) -> tuple[set[str], list[str], str]:
    """The client tool names among the agent's workspace tools, the ids that could not be read,
    and why not (the first reason)."""
    names: set[str] = set()
    unseen: list[str] = []
    why = ""
    for n, tool_id in enumerate(tool_ids):
        if n == MAX_TOOL_IDS:
            return names, [*unseen, *tool_ids[n:]], why or f"more than {MAX_TOOL_IDS} tools"
        try:
            answer = get_json(tool_url(cfg.agent.api_base, tool_id), key, timeout)
        except Unreachable as exc:
            return names, [*unseen, *tool_ids[n:]], why or str(exc)
        if answer.status == 200:
            name = agent_tools.client_tool_name(_dig(answer.body, "tool_config"))
            if name:
                names.add(name)
        else:
            unseen.append(tool_id)
            why = why or f"HTTP {answer.status}"
    return names, unseen, why


def _tools(cfg: Config, key: Secret, agent: Any, timeout: float) -> Check:
    """Built-in client tools the agent does not declare, and client tools it declares that the
    box does not have (the box answers a call to one with an error result)."""
    builtin = [spec.name for spec in agent_tools.builtin_specs(cfg)]
    fix_unread = "check that the agent declares the client tools `voicebox tools` prints"
    if agent is None:
        return warn(
            "client tools", "not checked: the agent's settings could not be read", fix_unread
        )
    declared = agent_tools.declared_tools(agent)
    if declared is None:
        return warn("client tools", "the agent's answer does not show its tools", fix_unread)
    names, unseen, why = _read_tool_ids(cfg, key, declared.tool_ids, timeout)
    cmp = agent_tools.compare(builtin, declared.client | names)
    problems: list[str] = []
    fixes: list[str] = []
    if cmp.missing and unseen:
        problems.append(
            f"{len(unseen)} of the agent's workspace tools (tool_ids) could not be read ({why}): "
            f"not seen whether it declares {', '.join(cmp.missing)}"
        )
        fixes.append(
            "give the key permission to read the workspace's tools, or compare the agent's "
            "Tools with `voicebox tools`"
        )
    elif cmp.missing:
        problems.append(f"the agent does not declare {', '.join(cmp.missing)}: it never calls them")
        fixes.append(ADD_TOOLS)
    if cmp.unknown:
        problems.append(
            f"the agent declares client tools this box does not have: {', '.join(cmp.unknown)} "
            "(the box answers a call to one with an error result, unknown tool)"
        )
        fixes.append(
            "remove the ones the box lacks from the agent, unless another client of it has them"
        )
    if problems:
        return warn("client tools", "; ".join(problems), "; ".join(fixes))
    detail = f"the agent declares the built-in tools {', '.join(builtin)}"
    if unseen:
        detail += f" ({len(unseen)} workspace tools could not be read: {why})"
    return ok("client tools", detail)
