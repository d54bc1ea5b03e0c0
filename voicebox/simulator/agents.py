"""The simulated agents' settings, as the service's get-agent endpoint returns them.

`GET /v1/convai/agents/{agent_id}` answers with the fields voicebox reads: `agent_id`, `name`,
`conversation_config` (first message, language, TTS voice, duration cap) and
`platform_settings.auth.enable_auth` and `platform_settings.overrides` (every override flag true,
or all false for an agent listed in SimConfig.overrides_disabled), and the tools it declares in
`conversation_config.agent.prompt`: the client tools named in SimConfig.client_tools (default the
daemon's built-in ones) and the system tool end_call, inline in `tools`, or as workspace tools
in `tool_ids` that `GET /v1/convai/tools/{tool_id}` answers (SimConfig.tool_listing).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from voicebox.agent_tools import builtin_specs
from voicebox.config import Config
from voicebox.convai.tools import ToolSpec

AGENTS_PATH = "/v1/convai/agents/"
TOOLS_PATH = "/v1/convai/tools/"
TOOL_ID_PREFIX = "tool_sim_"
# inline: prompt.tools; ids: prompt.tool_ids, each readable; ids_unreadable: tool_ids whose GET
# answers 403 (a key without the permission to read workspace tools)
ToolListing = Literal["inline", "ids", "ids_unreadable"]
END_CALL = {"type": "system", "name": "end_call", "description": "", "params": {}}


def builtin_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in builtin_specs(Config()))


def tool_config(name: str) -> dict[str, Any]:
    """A declared client tool: the daemon's definition for a built-in name, else a stand-in."""
    for spec in builtin_specs(Config()):
        if spec.name == name:
            return spec.definition()
    return ToolSpec(name, f"a client tool named {name}").definition()


def tool_id(name: str) -> str:
    return TOOL_ID_PREFIX + name


def tool_name(raw_id: str) -> str | None:
    """The client tool a simulated tool id stands for; None for an id the simulator never gave."""
    if not raw_id.startswith(TOOL_ID_PREFIX):
        return None
    return raw_id[len(TOOL_ID_PREFIX) :] or None


def prompt_tools(names: Iterable[str], listing: ToolListing) -> dict[str, Any]:
    """The `prompt` fields that declare these client tools (and end_call)."""
    if listing == "inline":
        return {"tools": [tool_config(n) for n in names] + [END_CALL], "tool_ids": []}
    return {"tools": [], "tool_ids": [tool_id(n) for n in names]}


def agent_settings(
    agent_id: str,
    *,
    first_message: str,
    max_duration_s: float,
    enable_auth: bool,
    overrides_enabled: bool,
    client_tools: Iterable[str] = (),
    tool_listing: ToolListing = "inline",
) -> dict[str, Any]:
    """The get-agent body for one simulated agent."""
    on = overrides_enabled
    prompt = {"prompt": "", **prompt_tools(client_tools, tool_listing)}
    return {
        "agent_id": agent_id,
        "name": f"voicebox simulator ({agent_id})",
        "conversation_config": {
            "agent": {"first_message": first_message, "language": "en", "prompt": prompt},
            "tts": {"voice_id": "sim-voice", "agent_output_audio_format": "pcm_16000"},
            "conversation": {"max_duration_seconds": int(max_duration_s)},
        },
        "platform_settings": {
            "auth": {"enable_auth": enable_auth, "allowlist": []},
            "overrides": {
                "conversation_config_override": {
                    "agent": {"first_message": on, "language": on, "prompt": {"prompt": on}},
                    "tts": {"voice_id": on},
                    "conversation": {"text_only": on, "max_duration_seconds": on},
                },
                "custom_llm_extra_body": on,
                "enable_conversation_initiation_client_data_from_webhook": False,
            },
        },
    }
