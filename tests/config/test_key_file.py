"""A key or config file that is not UTF-8 (a key saved as UTF-16 by a Windows editor): every
command says so in one line naming the file and exits 78 (EX_CONFIG, which the units do not
restart); doctor reports it as a failed check and runs the others."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicebox.config import EX_CONFIG
from voicebox.doctor.host import Host
from voicebox.doctor.run import checks

REPO = Path(__file__).resolve().parents[2]
UTF16_KEY = "sk_windows_key\r\n".encode("utf-16")  # with its BOM, as Notepad's "Unicode" saves


def voicebox(
    *args: str, env: dict[str, str] | None = None, stdin: str | bytes = ""
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "ELEVENLABS_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "voicebox", *args],
        env={**base, **(env or {})}, capture_output=True, timeout=60, cwd=REPO,
        input=stdin.encode() if isinstance(stdin, str) else stdin,
    )  # fmt: skip
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def one_line_naming(proc: subprocess.CompletedProcess[str], path: Path) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    lines = [line for line in proc.stderr.splitlines() if str(path) in line]
    assert len(lines) == 1 and "UTF-8" in lines[0], proc.stderr


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_bytes(UTF16_KEY)
    return path


def write_config(tmp_path: Path, key_file: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"agent:\n  agent_id: agent-x\n  api_base: http://127.0.0.1:9\n  api_key_file: {key_file}\n"
    )
    return path


@pytest.mark.parametrize("command", ["check-config", "run", "phone"])
def test_a_utf16_api_key_file_is_one_line_and_exit_78(
    tmp_path: Path, key_file: Path, command: str
) -> None:
    proc = voicebox(command, "--config", str(write_config(tmp_path, key_file)))
    assert proc.returncode == EX_CONFIG, proc.stderr
    one_line_naming(proc, key_file)


def test_a_utf16_systemd_credential_is_one_line_and_exit_78(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "elevenlabs_api_key").write_bytes(UTF16_KEY)
    (creds / "twilio_auth_token").write_bytes("0123abcd".encode("utf-16"))
    config = tmp_path / "config.yaml"
    config.write_text("agent:\n  agent_id: agent-x\n")
    for command in ("run", "phone"):
        proc = voicebox(command, "--config", str(config), env={"CREDENTIALS_DIRECTORY": str(creds)})
        assert proc.returncode == EX_CONFIG, proc.stderr
        assert "Traceback" not in proc.stderr and "UTF-8" in proc.stderr, proc.stderr
        assert str(creds) in proc.stderr


def test_a_utf8_bom_is_not_part_of_the_key(tmp_path: Path) -> None:
    from voicebox import config

    path = tmp_path / "key"
    path.write_bytes(b"\xef\xbb\xbfsk_bom\n")
    cfg = config.load(write_config(tmp_path, path))
    key = config.load_api_key(cfg, {})
    assert key is not None and key.reveal() == "sk_bom"


def test_a_utf16_config_is_one_line_and_exit_78(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes("agent:\n  agent_id: a\n".encode("utf-16"))
    proc = voicebox("check-config", "--config", str(path))
    assert proc.returncode == EX_CONFIG
    one_line_naming(proc, path)


def test_doctor_fails_the_key_check_and_runs_the_others(tmp_path: Path, key_file: Path) -> None:
    config = write_config(tmp_path, key_file)
    results = {c.name: c for c in checks(str(config), Host(root=tmp_path / "root"), quiet=True)}
    assert "doctor" not in results, results.get("doctor")
    key = results["api key"]
    assert key.status == "fail" and str(key_file) in key.detail and "UTF-8" in key.detail
    assert "UTF-8" in key.fix
    assert {"dns", "credential", "journal", "free space"} <= set(results)


def test_doctor_on_a_utf16_installed_credential(tmp_path: Path) -> None:
    root = tmp_path / "root"
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    cred.parent.mkdir(parents=True)
    cred.write_bytes(UTF16_KEY)
    config = tmp_path / "config.yaml"
    config.write_text("agent:\n  agent_id: agent-x\n  api_base: http://127.0.0.1:9\n")
    results = {c.name: c for c in checks(str(config), Host(root=root), quiet=True)}
    assert "doctor" not in results
    assert results["api key"].status == "fail" and "UTF-8" in results["api key"].detail
    assert "journal" in results


def setup(root: Path, *args: str, stdin: str | bytes = "") -> subprocess.CompletedProcess[str]:
    return voicebox(
        "setup", "--non-interactive", "--config", str(root / "etc/voicebox/config.yaml"),
        "--root", str(root), *args, stdin=stdin,
    )  # fmt: skip


def setup_lines(proc: subprocess.CompletedProcess[str], path: Path | str) -> list[str]:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return [line for line in out.splitlines() if str(path) in line and "UTF-8" in line]


def test_setup_on_a_utf16_config_or_key_file_is_one_line_and_exit_78(
    tmp_path: Path, key_file: Path
) -> None:
    root = tmp_path / "root"
    path = root / "etc/voicebox/config.yaml"
    path.parent.mkdir(parents=True)
    path.write_bytes("agent:\n  agent_id: a\n".encode("utf-16"))
    proc = setup(root, "--no-check", "--agent-id", "b")
    assert proc.returncode == EX_CONFIG and len(setup_lines(proc, path)) == 1, proc.stdout
    assert path.read_bytes() == "agent:\n  agent_id: a\n".encode("utf-16")  # untouched
    path.write_text("agent:\n  agent_id: a\n")
    proc = setup(root, "--no-check", "--api-key-file", str(key_file))
    assert proc.returncode == EX_CONFIG and len(setup_lines(proc, key_file)) == 1, proc.stdout
    proc = setup(root, "--no-check", "--api-key-file", "-", stdin=UTF16_KEY)
    assert proc.returncode == EX_CONFIG, proc.stdout
    assert len(setup_lines(proc, "the key on standard input")) == 1, proc.stdout
    assert not (root / "etc/voicebox/credentials").exists()


def test_setup_replaces_a_utf16_stored_key_and_refuses_to_keep_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = root / "etc/voicebox/config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("agent:\n  agent_id: a\n  api_base: http://127.0.0.1:9\n")
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    cred.parent.mkdir(parents=True)
    cred.write_bytes(UTF16_KEY)
    proc = setup(root, "--agent-id", "b")  # checks with the stored key: it cannot be read
    assert proc.returncode == EX_CONFIG and len(setup_lines(proc, cred)) == 1, proc.stdout
    proc = setup(root, "--no-check", "--api-key-file", "-", stdin="sk_new\n")
    assert proc.returncode == 0, proc.stdout
    assert cred.read_text() == "sk_new\n"
