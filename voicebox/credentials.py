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
        store(Path(argv[0]), sys.stdin.read())
    except (OSError, ValueError) as exc:
        print(f"voicebox.credentials: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
