"""voicebox: a Raspberry Pi voice appliance daemon for ElevenLabs Conversational AI agents."""

__version__ = "0.1.0"
