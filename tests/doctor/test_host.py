"""doctor's machine checks against a temporary root: service user and device nodes, the unit,
the credential, the journal, temperature and throttling; the button through gpiozero's
MockFactory. Tools (systemctl, journalctl, vcgencmd) are scripts on the Host's PATH."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from voicebox.config import Config, with_changes
from voicebox.doctor import host as h
from voicebox.doctor.host import Host

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def tool(bin_dir: Path, name: str, output: str, rc: int = 0) -> None:
    write(bin_dir / name, f"#!/bin/sh\ncat <<'OUT'\n{output}\nOUT\nexit {rc}\n", 0o755)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    gid = os.getgid()
    write(
        r / "etc/passwd", "root:x:0:0::/root:/bin/sh\nvoicebox:x:999:999::/nonexistent:/bin/false\n"
    )
    write(r / "etc/group", f"audio:x:{gid}:voicebox\ngpio:x:997:voicebox\nvoicebox:x:999:\n")
    write(r / "dev/snd/pcmC0D0c", "", 0o660)
    write(r / "dev/snd/controlC0", "", 0o660)
    (r / "dev/snd/by-path").mkdir()
    return r


def test_service_user_in_both_groups_and_nodes_open(root: Path) -> None:
    checks = {c.name: c for c in h.check_permissions(Host(root=root))}
    assert checks["service user"].status == "ok"
    assert checks["device nodes"].status == "ok"
    assert checks["device nodes"].detail.startswith("2 nodes")


def test_node_not_open_to_the_user_and_missing_membership(root: Path) -> None:
    (root / "dev/snd/pcmC0D0c").chmod(0o600)
    write(root / "etc/group", f"audio:x:{os.getgid()}:\ngpio:x:997:voicebox\n")
    checks = {c.name: c for c in h.check_permissions(Host(root=root))}
    assert checks["service user"].status == "warn"
    assert "audio" in checks["service user"].detail
    assert "usermod" in checks["service user"].fix
    assert checks["device nodes"].status == "fail"
    assert "/dev/snd/pcmC0D0c" in checks["device nodes"].detail


def test_no_user_no_gpio_group(root: Path) -> None:
    assert h.check_permissions(Host(root=root, user="nobody-here"))[0].status == "fail"
    write(root / "etc/group", f"audio:x:{os.getgid()}:voicebox\n")
    check = h.check_permissions(Host(root=root))[0]
    assert check.status == "fail" and "gpio" in check.detail


def install_unit(root: Path, enabled: bool = True) -> None:
    unit = root / "etc/systemd/system/voicebox.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "systemd/voicebox.service", unit)
    if enabled:
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True)
        (wants / "voicebox.service").symlink_to("/etc/systemd/system/voicebox.service")


def test_systemd_absent_is_a_warning_that_says_so(root: Path) -> None:
    install_unit(root, enabled=False)
    checks = {c.name: c for c in h.check_systemd(Host(root=root))}
    assert checks["unit"].status == "ok"
    assert checks["enabled"].status == "warn"
    assert checks["systemd"].status == "warn"
    assert "systemd is not running" in checks["systemd"].detail
    assert checks["watchdog"].status == "ok"  # read from the unit file instead


def test_unit_missing_fails(root: Path) -> None:
    checks = h.check_systemd(Host(root=root))
    assert [(c.name, c.status) for c in checks] == [("unit", "fail")]


SHOW_ACTIVE = """LoadState=loaded
UnitFileState=enabled
ActiveState=active
SubState=running
Result=success
ExecMainStatus=0
ExecMainCode=0
NRestarts=2
WatchdogUSec=30s"""


def test_systemd_running_active_with_restarts_and_watchdog(root: Path, tmp_path: Path) -> None:
    install_unit(root)
    (root / "run/systemd/system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "systemctl", SHOW_ACTIVE)
    tool(
        bin_dir,
        "journalctl",
        "voicebox.service: Scheduled restart job, restart counter is at 1.\n"
        "Started voicebox.service\n"
        "voicebox.service: Scheduled restart job, restart counter is at 2.",
    )
    checks = {c.name: c for c in h.check_systemd(Host(root=root, path=str(bin_dir)))}
    assert checks["enabled"].status == "ok"
    assert checks["active"].status == "ok"
    assert checks["last exit"].status == "ok"
    assert checks["restarts"].status == "warn"
    assert checks["restarts"].detail.startswith("2 automatic restarts in the last hour")
    assert checks["watchdog"].detail == "armed: 30 s"


def test_systemd_failed_with_exit_78_and_no_watchdog(root: Path, tmp_path: Path) -> None:
    install_unit(root)
    (root / "run/systemd/system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    shown = SHOW_ACTIVE.replace("ActiveState=active", "ActiveState=failed")
    shown = shown.replace("ExecMainStatus=0", "ExecMainStatus=78").replace("=30s", "=0")
    tool(bin_dir, "systemctl", shown)
    tool(bin_dir, "journalctl", "")
    checks = {c.name: c for c in h.check_systemd(Host(root=root, path=str(bin_dir)))}
    assert checks["active"].status == "fail"
    assert checks["last exit"].status == "fail" and "78" in checks["last exit"].detail
    assert checks["restarts"].status == "ok"
    assert checks["watchdog"].status == "warn"


def test_credential_present_missing_and_loose(root: Path) -> None:
    host = Host(root=root)
    assert h.check_credential(host).status == "fail"
    cred = write(host.credential, "sk-secret\n", 0o644)
    loose = h.check_credential(host)
    assert loose.status == "fail" and "0644" in loose.detail and "chmod 600" in loose.fix
    cred.chmod(0o600)
    tight = h.check_credential(host)
    assert tight.status == ("ok" if os.geteuid() == 0 else "warn")
    assert "sk-secret" not in tight.line()
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600


def test_journal_persistent_or_volatile(root: Path) -> None:
    host = Host(root=root)
    volatile = h.check_journal(host)
    assert volatile.status == "warn" and "mkdir -p /var/log/journal" in volatile.fix
    (root / "var/log/journal").mkdir(parents=True)
    assert h.check_journal(host).status == "ok"
    write(root / "etc/systemd/journald.conf.d/ram.conf", "[Journal]\nStorage=volatile\n")
    assert h.check_journal(host).status == "warn"


def test_temperature_and_throttle_bits(root: Path, tmp_path: Path) -> None:
    host = Host(root=root, path=str(tmp_path / "nobin"))
    assert h.check_temperature(host).status == "warn"
    assert h.check_throttling(host).status == "warn"
    write(root / "sys/class/thermal/thermal_zone0/temp", "52300\n")
    assert h.check_temperature(host).detail == "52.3 °C"
    write(root / "sys/class/thermal/thermal_zone0/temp", "86000\n")
    assert h.check_temperature(host).status == "fail"
    flags = root / "sys/devices/platform/soc/soc:firmware/get_throttled"
    write(flags, "50000\n")
    since = h.check_throttling(host)
    assert since.status == "warn"
    assert since.detail == "since boot: under-voltage, throttled (0x50000)"
    write(flags, "50005\n")
    assert h.check_throttling(host).status == "fail"
    flags.unlink()
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "vcgencmd", "throttled=0x0")
    assert h.check_throttling(Host(root=root, path=str(bin_dir))).status == "ok"


def test_throttle_flags_decode() -> None:
    assert h.throttle_flags(0x0) == ([], [])
    assert h.throttle_flags(0x80008) == (["soft temperature limit"], ["soft temperature limit"])
    assert h.throttle_flags(0x20000) == ([], ["ARM frequency capped"])


def test_lgpio_on_a_pi_5(root: Path) -> None:
    assert h.check_lgpio(Host(root=root)).status == "warn"
    write(root / "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    check = h.check_lgpio(Host(root=root))
    have = importlib.util.find_spec("lgpio") is not None
    assert check.status == ("ok" if have else "fail")
    assert "Raspberry Pi 5" in check.detail


def button_cfg(pin: int | None = 17) -> Config:
    return with_changes(Config(), **{"gpio.button.pin": pin})


def test_button_reads_released_and_sees_a_press() -> None:
    factory = MockFactory()
    assert h.check_button(button_cfg(), factory).detail == "BCM pin 17 reads released"
    pin = factory.pin(17)
    said: list[str] = []
    presser = threading.Timer(0.2, pin.drive_low)

    def say(text: str) -> None:
        said.append(text)
        presser.start()

    check = h.check_button(button_cfg(), factory, press=True, say=say)
    presser.join()
    assert said == ["press the button on BCM pin 17 now (10 s)..."]
    assert check.status == "ok" and "press seen" in check.detail


def test_button_not_pressed_in_time_fails() -> None:
    check = h.check_button(button_cfg(), MockFactory(), press=True, say=lambda t: None, wait_s=0.2)
    assert check.status == "fail" and "no press" in check.detail


def test_no_button_configured() -> None:
    assert h.check_button(button_cfg(None), MockFactory()).status == "ok"


def test_a_running_daemon_keeps_its_devices_and_pin(root: Path, tmp_path: Path) -> None:
    from voicebox.doctor.run import checks

    install_unit(root)
    (root / "run/systemd/system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    tool(bin_dir, "systemctl", "active")
    tool(bin_dir, "journalctl", "")
    config = write(
        tmp_path / "config.yaml", "agent: {agent_id: a, api_base: 'http://127.0.0.1:9'}\n"
    )
    results = {c.name: c for c in checks(str(config), Host(root=root, path=str(bin_dir)))}
    assert results["audio"].status == "warn"
    assert "systemctl stop voicebox" in results["audio"].fix
    assert "mic level" not in results and "speaker" not in results
    assert results["button"].status == "warn" and "holds the button pin" in results["button"].detail


def test_announcement_cache_and_free_space_are_read_under_the_root(root: Path) -> None:
    from voicebox import announcements, tts

    cfg = with_changes(Config(), **{"paths.state_dir": "/var/lib/voicebox"})
    host = Host(root=root)
    missing = h.check_cache(cfg, host)
    n = sum(1 for name in announcements.EVENTS if announcements.phrase_for(cfg, name))
    assert missing.status == "warn" and missing.detail.startswith(f"{n} of {n} phrases not cached")
    fmt = tts.synthesis_format(cfg)
    cache = announcements.PhraseCache(root / "var/lib/voicebox/tts")
    for name in announcements.EVENTS:
        if text := announcements.phrase_for(cfg, name):
            cache.store(announcements.cache_key(cfg, text, fmt), tts.pcm_rate(fmt), b"\0\0" * 10)
    assert h.check_cache(cfg, host).detail == f"all {n} phrases cached ({fmt})"
    disk = h.check_disk(cfg, host)
    assert disk.status == "ok" and disk.detail.startswith("/var/lib/voicebox: ")
    assert h.check_cache(with_changes(cfg, **{"announcements.enabled": False}), host).status == "ok"
