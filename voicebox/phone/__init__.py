"""Phone calls to the agent: a Twilio Media Streams bridge (`voicebox phone`, `voicebox call`)."""
