"""The phone and setup extras: what pyproject lists, and the one-line error without them."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import voicebox
from voicebox import cli, extras

REPO = Path(__file__).resolve().parents[1]


def test_the_extras_are_pyprojects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    for name, reqs in extras.EXTRAS.items():
        assert optional[name] == list(reqs)
        assert not set(reqs) & set(project["dependencies"])
    assert "voicebox[phone,setup]" in optional["dev"]  # the tests run every command


@pytest.mark.parametrize(
    ("argv", "hidden", "extra"),
    [
        (["phone"], "twilio", "phone"),
        (["phone"], "aiohttp", "phone"),
        (["call", "+15551234567"], "twilio", "phone"),
        (["setup", "--non-interactive"], "ruamel", "setup"),
    ],
)
def test_a_missing_extra_is_one_line_and_69(
    argv: list[str],
    hidden: str,
    extra: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # unimportable, as when the extra was never installed; the command modules imported afresh
    for attr in ("phone", "setup", "config_edit"):  # gone from the package, then put back
        monkeypatch.setattr(voicebox, attr, getattr(voicebox, attr, None), raising=False)
        monkeypatch.delattr(voicebox, attr)
    for name in list(sys.modules):
        if name.split(".")[0] == hidden or name.startswith(
            ("voicebox.phone", "voicebox.setup", "voicebox.config_edit")
        ):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, hidden, None)
    code = cli.main([*argv, "--config", str(tmp_path / "config.yaml")])
    err = capsys.readouterr().err
    assert code == extras.EX_UNAVAILABLE == 69
    command = argv[0]
    assert err.startswith(f"voicebox {command} needs the {extra} extra, which is not installed")
    assert "install.sh" in err and f"{sys.executable} -m pip install" in err
    assert err.count("\n") == 1


def test_the_phone_unit_gets_the_error_and_no_traceback(tmp_path: Path) -> None:
    """As systemd runs it: `python -m voicebox phone`, twilio unimportable."""
    hide = "import sys, runpy; sys.modules['twilio'] = None; runpy.run_module('voicebox', run_name='__main__')"  # noqa: E501
    r = subprocess.run(
        [sys.executable, "-c", hide, "phone", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 69, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [extras.message("phone", "phone")]
    assert "sudo scripts/install.sh --with-phone" in r.stderr


def test_another_missing_module_is_not_called_an_extra() -> None:
    assert extras.missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert extras.missing_extra(ModuleNotFoundError("x", name="ruamel.yaml")) == "setup"
