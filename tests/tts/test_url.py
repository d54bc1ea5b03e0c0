"""The stream-input URL, the phrase chunking and the synthesis format (pure functions)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from voicebox.config import Config, TtsConfig, with_changes
from voicebox.tts import build_url, synthesis_format, text_chunks

OPTIONAL = {
    "optimize_streaming_latency": st.none() | st.integers(0, 4),
    "inactivity_timeout": st.none() | st.integers(1, 180),
    "auto_mode": st.none() | st.booleans(),
    "language_code": st.none() | st.text(min_size=1, max_size=8),
    "enable_ssml_parsing": st.none() | st.booleans(),
}


@given(
    voice_id=st.text(min_size=1, max_size=30),
    model_id=st.text(min_size=1, max_size=30),
    base=st.sampled_from(["https://api.elevenlabs.io", "http://127.0.0.1:8765/", "https://h/x/"]),
    rate=st.sampled_from([8000, 16000, 22050, 24000, 44100]),
    settings=st.fixed_dictionaries(OPTIONAL),
)
def test_any_settings_give_one_query_with_every_value_encoded(
    voice_id: str, model_id: str, base: str, rate: int, settings: dict[str, object]
) -> None:
    cfg = TtsConfig(voice_id=voice_id, model_id=model_id, **settings)  # type: ignore[arg-type]
    url = build_url(base, cfg, f"pcm_{rate}")
    assert url.count("?") == 1
    assert all(c not in url for c in " #\n")
    parts = urlsplit(url)
    assert parts.scheme == ("wss" if base.startswith("https") else "ws")
    prefix = urlsplit(base).path.rstrip("/")
    segments = parts.path[len(prefix) :].split("/")
    assert segments[:3] == ["", "v1", "text-to-speech"] and segments[4:] == ["stream-input"]
    assert unquote(segments[3]) == voice_id
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [name for name, _ in query]
    assert len(names) == len(set(names))
    expected = {"model_id": model_id, "output_format": f"pcm_{rate}"}
    for name, value in settings.items():
        if isinstance(value, bool):
            expected[name] = "true" if value else "false"
        elif value is not None:
            expected[name] = str(value)
    assert dict(query) == expected
    if "None" not in voice_id + model_id + str(settings.get("language_code")):
        assert "None" not in url


def test_default_url_is_the_documented_one() -> None:
    url = build_url("https://api.elevenlabs.io", TtsConfig(), "pcm_16000")
    assert url == (
        "wss://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input"
        "?model_id=eleven_flash_v2_5&output_format=pcm_16000"
    )


def test_key_is_never_part_of_the_url() -> None:
    url = build_url("https://api.elevenlabs.io", TtsConfig(auto_mode=True), "pcm_16000")
    assert "key" not in url.lower() and url.endswith("&auto_mode=true")


@given(st.text(max_size=200))
def test_chunks_end_with_a_space_and_keep_the_words(text: str) -> None:
    chunks = text_chunks(text)
    assert all(c.endswith(" ") and not c.endswith("  ") and c.strip() for c in chunks)
    assert "".join(chunks).split() == text.split()


def test_chunks_split_after_punctuation() -> None:
    assert text_chunks("Ready.  Back online, at last!") == ["Ready. ", "Back online, ", "at last! "]


def test_synthesis_format_follows_the_output_device() -> None:
    def fmt(**changes: object) -> str:
        return synthesis_format(with_changes(Config(), **changes))

    assert fmt() == "pcm_24000"  # sounddevice default device, rate unknown
    assert fmt(**{"audio.output.sample_rate": 22050}) == "pcm_22050"
    assert fmt(**{"audio.output.sample_rate": 48000}) == "pcm_24000"
    assert fmt(**{"audio.output.sample_rate": 32000}) == "pcm_16000"
    assert fmt(**{"audio.output.sample_rate": 11025}) == "pcm_24000"
    assert fmt(**{"audio.output.backend": "file", "audio.output.path": "x.wav"}) == "pcm_16000"
    assert fmt(**{"tts.output_format": "pcm_8000"}) == "pcm_8000"
