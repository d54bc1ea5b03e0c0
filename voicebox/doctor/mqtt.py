"""The broker check (mqtt.enabled): DNS, TCP, TLS, then an MQTT CONNECT with the daemon's user
and password, each failure with its fix. The CONNECT is written here (a dozen bytes of MQTT
3.1.1) so that the check is synchronous and says exactly which step failed."""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Mapping
from pathlib import Path

from voicebox.config import Config, Secret
from voicebox.doctor.report import Check, fail, ok
from voicebox.mqtt.link import port_of, tls_context

TIMEOUT_S = 5.0
PASSWORD_FILE = "/etc/voicebox/credentials/mqtt/password"  # LoadCredential=mqtt:<its directory>
PASSWORD_FIX = (
    "store it: sudo install -d -m 0700 /etc/voicebox/credentials/mqtt && "
    "sudo scripts/install.sh --mqtt-password-file FILE (or set $VOICEBOX_MQTT_PASSWORD)"
)
_CONNACK = {
    1: "the broker does not speak MQTT 3.1.1",
    2: "the broker refused the client id",
    3: "the broker is unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str | None, password: Secret | None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, 10 s keepalive)."""
    flags = 0x02 | (0x80 if username else 0) | (0x40 if username and password else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10) + _string(client_id)
    if username:
        body += _string(username)
        if password:
            body += _string(password.reveal())
    length, size = b"", len(body)
    while True:
        size, digit = divmod(size, 128)
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            break
    return b"\x10" + length + body


def check_mqtt(cfg: Config, password: Secret | None) -> list[Check]:
    mq = cfg.mqtt
    host, port = mq.host, port_of(mq)
    broker_fix = "is the broker running (systemctl status mosquitto)? else fix mqtt.host/port"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        return [fail("mqtt dns", f"{host}: {reason}", "check mqtt.host and the network")]
    out = [ok("mqtt dns", f"{host} -> {', '.join(sorted({str(i[4][0]) for i in infos})[:3])}")]
    try:
        sock: socket.socket = socket.create_connection((host, port), timeout=TIMEOUT_S)
    except OSError as exc:
        out.append(fail("mqtt tcp", f"{host}:{port}: {exc.strerror or exc}", broker_fix))
        return out
    with sock:
        out.append(ok("mqtt tcp", f"{host}:{port} connected"))
        try:
            context = tls_context(mq)
        except (OSError, ssl.SSLError) as exc:
            out.append(fail("mqtt tls", f"CA file {mq.tls}: {exc}", "fix mqtt.tls"))
            return out
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                fix = "set mqtt.tls to the CA file that signed the broker's certificate"
                out.append(fail("mqtt tls", f"{host}:{port}: {exc.verify_message}", fix))
                return out
            except (ssl.SSLError, OSError) as exc:
                fix = "check mqtt.port is the broker's TLS listener (8883), or set mqtt.tls: false"
                out.append(fail("mqtt tls", f"{host}:{port}: {exc}", fix))
                return out
            out.append(ok("mqtt tls", f"{sock.version()} (the certificate is trusted)"))
        out.append(_login(sock, mq.username, password, broker_fix))
    return out


def _login(sock: socket.socket, username: str | None, password: Secret | None, fix: str) -> Check:
    who = f"user {username!r}" if username else "anonymous"
    try:
        sock.sendall(connect_packet("voicebox-doctor", username, password))
        answer = b""
        while len(answer) < 4:
            part = sock.recv(4 - len(answer))
            if not part:
                break
            answer += part
    except OSError as exc:
        return fail("mqtt login", f"{who}: {exc}", fix)
    if len(answer) < 4 or answer[0] != 0x20:
        return fail("mqtt login", f"{who}: no CONNACK (is this an MQTT broker?)", fix)
    code = answer[3]
    if code == 0:
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        return ok("mqtt login", f"{who} accepted")
    reason = _CONNACK.get(code, f"code {code}")
    if code in (4, 5):
        fix = (
            "check mqtt.username and the password (credential mqtt_password, "
            f"{PASSWORD_FILE}, or $VOICEBOX_MQTT_PASSWORD)"
            if username
            else "the broker needs a user: set mqtt.username and store its password"
        )
    return fail("mqtt login", f"{who}: {reason}", fix)


def find_password(environ: Mapping[str, str] | None, root: Path) -> Secret | None:
    """The password the daemon would use, else the installed credential file (if readable)."""
    from voicebox import config

    found = config.load_mqtt_password(environ)
    if found is not None:
        return found
    try:
        value = config.read_secret(root / PASSWORD_FILE.lstrip("/"))
    except OSError:
        return None
    return Secret(value) if value else None
