"""The simulated agents' settings, as the service's get-agent endpoint returns them.

`GET /v1/convai/agents/{agent_id}` answers with the fields voicebox reads: `agent_id`, `name`,
`conversation_config` (first message, language, TTS voice, duration cap) and
`platform_settings.auth.enable_auth` and `platform_settings.overrides` (every override flag true,
or all false for an agent listed in SimConfig.overrides_disabled).
"""

from __future__ import annotations

from typing import Any

AGENTS_PATH = "/v1/convai/agents/"


def agent_settings(
    agent_id: str,
    *,
    first_message: str,
    max_duration_s: float,
    enable_auth: bool,
    overrides_enabled: bool,
) -> dict[str, Any]:
    """The get-agent body for one simulated agent."""
    on = overrides_enabled
    return {
        "agent_id": agent_id,
        "name": f"voicebox simulator ({agent_id})",
        "conversation_config": {
            "agent": {"first_message": first_message, "language": "en", "prompt": {"prompt": ""}},
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
