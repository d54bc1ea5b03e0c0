"""`python -m voicebox.credentials` (install.sh's path): a key that is not UTF-8 is one line, 78."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

KEY = "sk_" + "a1" * 16


def _store(tmp_path: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "voicebox.credentials", str(tmp_path / "cred" / "key")],
        input=data,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C"},
        timeout=30,
    )


@pytest.mark.parametrize(
    "data",
    [KEY.encode("utf-16"), KEY.encode("utf-16-be"), b"sk_\xff\xfe\x00abc\n", b"sk_\x01abc\n"],
)
def test_a_key_that_is_not_utf8_text_is_one_line_and_exit_78(tmp_path: Path, data: bytes) -> None:
    proc = _store(tmp_path, data)
    err = proc.stderr.decode()
    assert proc.returncode == 78, err
    assert len(err.splitlines()) == 1 and err.startswith("voicebox.credentials: the API key")
    assert "Traceback" not in err and not (tmp_path / "cred" / "key").exists()


def test_a_utf8_key_with_a_bom_is_stored_without_it(tmp_path: Path) -> None:
    proc = _store(tmp_path, b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cred" / "key").read_text() == KEY + "\n"
