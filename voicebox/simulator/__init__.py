"""A local ElevenLabs agent on loopback: same protocol and paths, with scripted faults."""
