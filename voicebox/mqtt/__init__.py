"""Home Assistant over MQTT: discovery payloads and commands (pure), the broker link (I/O)."""
