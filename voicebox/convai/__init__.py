"""The ElevenLabs Conversational AI WebSocket: wire messages and the conversation session."""
