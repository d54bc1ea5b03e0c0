"""The API key as the systemd credential file: written atomically, 0600, root-owned as root.

install.sh and `voicebox setup` both store the key with this module (stdlib only, so install.sh
can run it from the checkout before the venv exists), the key on standard input:

    PYTHONPATH=SRC python3 -m voicebox.credentials /etc/voicebox/credentials/elevenlabs_api_key
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_PATH = Path("/etc/voicebox/credentials/elevenlabs_api_key")


def clean(key: str) -> str:
    """The key without whitespace (a pasted key often carries a newline or spaces)."""
    return "".join(key.split())


def store(path: Path, key: str) -> None:
    """Write the key to `path` (dir 0700, file 0600, root:root when root); a reader sees the old
    file or the new one, never a partial key."""
    value = clean(key)
    if not value:
        raise ValueError("the API key is empty")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if os.geteuid() == 0:
            os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(
            "usage: python -m voicebox.credentials PATH  (the key on standard input)",
            file=sys.stderr,
        )
        return 2
    try:
        key = read_key(sys.stdin.buffer.read())
    except ValueError as exc:
        print(f"voicebox.credentials: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: what the key was given as, not this host
    try:
        store(Path(argv[0]), key)
    except (OSError, ValueError) as exc:
        print(f"voicebox.credentials: {exc}", file=sys.stderr)
        return 1
    return 0


def read_key(data: bytes) -> str:
    """The key given on standard input, decoded as UTF-8 (a BOM dropped); ValueError naming
    the encoding when it is not (a key saved as UTF-16 by a Windows editor)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError("the API key on standard input is UTF-16: save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the API key on standard input is not UTF-8 (byte {exc.start}): save it as UTF-8"
        ) from None
    if any(ord(c) < 32 and not c.isspace() for c in text):
        raise ValueError("the API key on standard input holds control characters")
    return text


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
