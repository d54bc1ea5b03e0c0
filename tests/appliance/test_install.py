"""scripts/install.sh in a temporary root (--root): layout, modes, re-runs, the key, --uninstall."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "install.sh"
KEY = "sk_test_0123456789abcdef0123456789abcdef"


def install(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    return path


def test_fresh_install_layout_and_modes(tmp_path: Path, key_file: Path) -> None:
    root = tmp_path / "root"
    r = install(root, "--api-key-file", str(key_file))
    assert r.returncode == 0, r.stderr
    assert KEY not in r.stdout + r.stderr

    config = root / "etc/voicebox/config.yaml"
    assert config.read_text() == (REPO / "config/voicebox.yaml").read_text()
    assert mode(config) == 0o640
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    assert cred.read_text().strip() == KEY
    assert mode(cred) == 0o600
    assert mode(cred.parent) == 0o700
    assert mode(cred.parent / "mqtt") == 0o700  # the unit's LoadCredential=mqtt: directory
    unit = root / "etc/systemd/system/voicebox.service"
    assert unit.read_text() == (REPO / "systemd/voicebox.service").read_text()
    assert mode(unit) == 0o644
    assert (root / "opt/voicebox/venv/bin/python").exists()
    pyvenv = (root / "opt/voicebox/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in pyvenv
    assert (root / "etc/default/voicebox").exists()
    assert (root / "var/lib/voicebox").is_dir()

    # the system changes it would make, and no global pip
    lines = r.stdout.splitlines()
    would = [line.split("would run: ", 1)[1] for line in lines if "would run: " in line]
    assert any(w.startswith("apt-get install") and "python3-lgpio" in w for w in would)
    # the unit's ExecReload runs /bin/kill (procps), which a minimal Debian lacks
    assert any(w.startswith("apt-get install") and "procps" in w for w in would)
    assert any(w.startswith("useradd --system") and "audio,gpio" in w for w in would)
    assert any(w.startswith("groupadd --system gpio") for w in would)
    pip = [w for w in would if " -m pip install" in w]
    assert len(pip) == 1 and pip[0].startswith(str(root / "opt/voicebox/venv/bin/python"))
    assert pip[0].endswith(f"{REPO}[setup]")  # `voicebox setup`'s extra, not the phone's
    assert "systemctl enable voicebox.service" in would
    assert any("announcements --prefetch" in w for w in would)


def test_rerun_keeps_an_edited_config_and_the_key(tmp_path: Path, key_file: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--api-key-file", str(key_file)).returncode == 0
    config = root / "etc/voicebox/config.yaml"
    config.write_text("agent:\n  agent_id: mine\n")
    r = install(root)  # an upgrade without a key
    assert r.returncode == 0, r.stderr
    assert config.read_text() == "agent:\n  agent_id: mine\n"
    assert "kept your /etc/voicebox/config.yaml" in r.stdout
    assert (root / "etc/voicebox/config.yaml.example").exists()
    assert (root / "etc/voicebox/credentials/elevenlabs_api_key").read_text().strip() == KEY
    assert "no API key" not in r.stderr


def test_key_from_stdin_replaces_the_old_one(tmp_path: Path, key_file: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--api-key-file", str(key_file)).returncode == 0
    r = install(root, "--api-key-stdin", stdin="  sk_new_key_987654321  \n")
    assert r.returncode == 0, r.stderr
    assert "sk_new_key" not in r.stdout + r.stderr
    cred = root / "etc/voicebox/credentials/elevenlabs_api_key"
    assert cred.read_text() == "sk_new_key_987654321\n"
    assert mode(cred) == 0o600
    names = sorted(p.name for p in cred.parent.iterdir())
    assert names == ["elevenlabs_api_key", "mqtt"]  # no temp files


def test_no_key_warns_and_skips_prefetch(tmp_path: Path) -> None:
    r = install(tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert "no API key given" in r.stderr
    assert "prefetch" not in r.stdout
    assert not (tmp_path / "root/etc/voicebox/credentials/elevenlabs_api_key").exists()


def test_bad_key_file_changes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args in (["--api-key-file", str(empty)], ["--api-key-file", str(tmp_path / "nope")]):
        r = install(tmp_path / "root", *args)
        assert r.returncode == 1 and "error:" in r.stderr
    assert not (tmp_path / "root/etc").exists()


def test_prefix_is_applied_to_the_unit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--prefix", "/srv/vb").returncode == 0
    unit = (root / "etc/systemd/system/voicebox.service").read_text()
    assert "ExecStart=/srv/vb/venv/bin/python -m voicebox run" in unit
    assert "/opt/voicebox" not in unit
    assert (root / "srv/vb/venv/bin/python").exists()


def test_uninstall_keeps_etc_voicebox(tmp_path: Path, key_file: Path) -> None:
    root = tmp_path / "root"
    assert install(root, "--api-key-file", str(key_file)).returncode == 0
    r = install(root, "--uninstall")
    assert r.returncode == 0, r.stderr
    assert not (root / "opt/voicebox").exists()
    assert not (root / "etc/systemd/system/voicebox.service").exists()
    assert not (root / "var/lib/voicebox").exists()
    assert (root / "etc/voicebox/config.yaml").exists()
    assert (root / "etc/voicebox/credentials/elevenlabs_api_key").exists()
    assert "would run: userdel voicebox" in r.stdout
    assert "kept /etc/voicebox" in r.stdout


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    r = install(tmp_path / "root", "--frobnicate")
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr


def test_the_mqtt_password_is_stored_as_the_units_credential(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-pw"
    secret.write_text("correct horse battery\n")  # a password may hold spaces: kept as given
    root = tmp_path / "root"
    r = install(root, "--mqtt-password-file", str(secret))
    assert r.returncode == 0, r.stderr
    assert "correct horse" not in r.stdout + r.stderr
    stored = root / "etc/voicebox/credentials/mqtt/password"
    assert stored.read_text() == "correct horse battery\n"
    assert mode(stored) == 0o600
    assert [p.name for p in stored.parent.iterdir()] == ["password"]  # no temp files


def test_with_phone_adds_the_phone_extra(tmp_path: Path) -> None:
    r = install(tmp_path / "root", "--with-phone")
    assert r.returncode == 0, r.stderr
    pip = [line for line in r.stdout.splitlines() if "would run: " in line and " -m pip " in line]
    assert len(pip) == 1 and pip[0].endswith(f"{REPO}[setup,phone]")
    usage = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert "--with-phone" in usage.stdout
