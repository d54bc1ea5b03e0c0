"""`make system-test` on a machine that cannot boot a container: one line saying why, exit 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _as_unprivileged(argv: list[str]) -> list[str]:
    if os.getuid() != 0:
        return argv
    if not shutil.which("setpriv"):
        pytest.fail("running as root without setpriv: cannot drop to an unprivileged user")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


@pytest.fixture
def script() -> Iterator[Path]:
    """A copy of the script that an unprivileged user can read wherever the checkout is."""
    top = Path(tempfile.mkdtemp())
    try:
        top.chmod(0o755)
        (top / "scripts").mkdir(mode=0o755)
        copy = top / "scripts/system-test.sh"
        shutil.copy(REPO / "scripts/system-test.sh", copy)
        copy.chmod(0o755)
        yield copy
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize("args", [[], ["--check"], ["arm64"]])
def test_cannot_run_says_why_in_one_line_and_fails(script: Path, args: list[str]) -> None:
    r = subprocess.run(
        _as_unprivileged(["bash", str(script), *args]),
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "not root" in lines[0], lines
