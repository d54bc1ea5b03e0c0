"""The local fakes on loopback: an ElevenLabs agent (same protocol and paths, with scripted faults)
and Twilio's REST API and Media Streams (twilio.py)."""
