"""`voicebox doctor`: field diagnosis, one line per check (ok / warn / fail) with the fix.

report.py holds the result type and its rendering; service.py the REST checks against the agent
service; network.py DNS/TCP/TLS/clock; audio.py the devices, the mic level and the speaker tone;
host.py permissions, GPIO, systemd, credential, journal, cache, disk and the Pi's health; run.py
orders them and is the command.
"""
