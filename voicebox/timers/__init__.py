"""Timers and alarms that ring on the box: the book (pure), its file, the clock's trust, the
daemon's ringer, and the client tools the agent sets them with."""
