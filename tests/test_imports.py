"""Who imports what: the cli dispatches to command modules, which never import it back; the
appliance's commands import no optional extra (twilio, aiohttp, ruamel)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voicebox"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_only_the_entry_point_imports_the_cli() -> None:
    importers = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "voicebox.cli" in _imported(p) and p.name != "cli.py"
    )
    assert importers == ["__main__.py"]


def _extras_imported_by(code: str) -> str:
    """What a fresh interpreter has of the optional extras' packages after running `code`."""
    probe = "sys.modules if m.split('.')[0] in ('twilio', 'aiohttp', 'ruamel')"
    full = f"import sys\n{code}\nprint(sorted(m for m in {probe}))"
    r = subprocess.run([sys.executable, "-c", full], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize(
    "module",
    ["voicebox.daemon", "voicebox.cli", "voicebox.doctor.run", "voicebox.status", "voicebox.tts"],
)
def test_the_appliance_imports_no_optional_extra(module: str) -> None:
    """`voicebox run` (and the other everyday commands) work without the phone and setup extras."""
    assert _extras_imported_by(f"import {module}") == "[]"


def test_the_parser_imports_no_optional_extra() -> None:
    """`voicebox --help` builds every subcommand's parser without importing a command module."""
    assert _extras_imported_by("from voicebox import cli\ncli.build_parser()") == "[]"


def test_the_probe_sees_an_extra() -> None:
    assert _extras_imported_by("import voicebox.phone.server") != "[]"
