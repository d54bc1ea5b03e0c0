"""The installed appliance under a real systemd 252: every promise the unit makes, in order.

The tests run in file order against one booted container (later ones rely on the install and the
running simulator, not on each other's results). `pi_userland` marks the subset that
`make system-test ARCH=arm64` runs under qemu-user: install, what the unit runs, start, talk.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.system.box import Box
from tests.system.conftest import (
    ARCH,
    CONFIG,
    FIGURES,
    SIM_UNIT,
    SLOW,
    SPEAKER,
    Appliance,
    wav_voiced_seconds,
)

pi_userland = pytest.mark.pi_userland


def _mono_s(value: str) -> float:
    return int(value) / 1e6


def _start_fresh(app: Appliance) -> dict[str, str]:
    app.box.sh(
        "systemctl reset-failed voicebox 2>/dev/null; systemctl restart voicebox",
        timeout=120 * SLOW,
    )
    return app.wait_active()


@pi_userland
def test_install_as_the_readme_says(installed: Appliance) -> None:
    box = installed.box
    out = installed.install_output  # type: ignore[attr-defined]
    assert "error" not in out.lower(), f"install.sh reported an error:\n{out}"
    assert box.sh("systemctl is-enabled voicebox", check=False).stdout.strip() == "enabled", (
        "install.sh did not enable voicebox.service"
    )
    assert box.sh("test -x /opt/voicebox/venv/bin/python", check=False).returncode == 0
    imports = box.sh(
        "/opt/voicebox/venv/bin/python -c 'import sounddevice, numpy, soxr, systemd.journal, "
        "systemd.daemon, gpiozero, websockets, psutil, yaml; print(sounddevice.get_portaudio_"
        "version()[1])'",
        check=False,
    )
    assert imports.returncode == 0, f"a runtime dependency does not import:\n{imports.stderr}"
    if ARCH == "arm64":  # the Pi's GPIO library (lgpio makes a FIFO in $LG_WD at import)
        r = box.sh("LG_WD=/tmp /opt/voicebox/venv/bin/python -c 'import lgpio'", check=False)
        assert r.returncode == 0, f"install.sh left no lgpio on aarch64:\n{r.stderr}"
    mode = box.sh("stat -c '%a %U' /etc/voicebox/credentials/elevenlabs_api_key").stdout.split()
    assert mode == ["600", "root"], f"the credential is {mode}, expected 0600 root"
    check = box.sh(f"/opt/voicebox/venv/bin/voicebox check-config --config {CONFIG}", check=False)
    assert check.returncode == 0, f"voicebox check-config rejects the config:\n{check.stderr}"
    assert installed.key not in check.stdout, "check-config printed the API key"


@pi_userland
def test_the_unit_only_runs_what_install_provides(installed: Appliance) -> None:
    """Every program an installed unit executes exists, and every user and group it names; the
    credential voicebox.service loads is there."""
    box = installed.box
    units = box.sh("cd /etc/systemd/system && ls voicebox*.service").stdout.split()
    assert "voicebox.service" in units, units
    missing = []
    for unit in units:
        props = box.show(
            unit,
            "ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost",
            "User", "Group", "SupplementaryGroups", "LoadCredential",
        )  # fmt: skip
        for name, value in props.items():
            for path in re.findall(r"path=(\S+)", value):
                if box.sh(f"test -x {path}", check=False).returncode != 0:
                    missing.append(f"{unit}: {name} runs {path}, which this system does not have")
        for group in [props["Group"], *props["SupplementaryGroups"].split()]:
            if group and box.sh(f"getent group {group}", check=False).returncode != 0:
                missing.append(f"{unit} needs group {group}, which does not exist")
        if box.sh(f"getent passwd {props['User']}", check=False).returncode != 0:
            missing.append(f"{unit} runs as user {props['User']}, which does not exist")
        if unit == "voicebox.service":  # the phone unit's Twilio token comes with its setup
            for path in re.findall(r":(/\S+?)[\s}]", props["LoadCredential"] + " "):
                if box.sh(f"test -s {path}", check=False).returncode != 0:
                    missing.append(f"LoadCredential reads {path}, which is missing or empty")
    assert not missing, "after install.sh:\n" + "\n".join(missing)


@pi_userland
def test_start_reaches_ready_and_shows_state(installed: Appliance) -> None:
    box = installed.box
    box.sh("systemctl start voicebox", timeout=120 * SLOW)
    p = box.show(
        "voicebox", "ActiveState", "SubState", "Type", "StatusText",
        "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic",
    )  # fmt: skip
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), f"after start: {p}"
    assert p["Type"] == "notify", "the unit is not Type=notify, so 'active' does not mean READY=1"
    assert p["StatusText"], "READY=1 came without a STATUS= (StatusText is empty)"
    status = installed.wait_active()["StatusText"]
    assert re.search(r"idle|connecting|listening|speaking|reconnecting", status), status
    FIGURES["start_to_ready_s"] = round(
        _mono_s(p["ActiveEnterTimestampMonotonic"]) - _mono_s(p["ExecMainStartTimestampMonotonic"]),
        3,
    )


@pi_userland
def test_conversation_with_the_simulator(installed: Appliance) -> None:
    box = installed.box
    installed.wait_active()
    sim = installed.wait_journal(SIM_UNIT, "sim.turn", after="", timeout=60)
    assert "sim.conversation.started" in sim
    speaker = box.root / SPEAKER.lstrip("/")
    first = speaker.stat().st_size
    box.wait_for(
        "two user turns answered", lambda: box.journal(f"-u {SIM_UNIT}").count("sim.reply") >= 2,
        timeout=60 * SLOW,
    )  # fmt: skip
    box.wait_for(
        "the speaker WAV growing", lambda: speaker.stat().st_size > first, timeout=10 * SLOW
    )
    # the header is patched every 0.5 s: wait for the replies' voice to land in the file
    voiced = box.wait_for(
        "over 1 s of agent voice in the speaker WAV",
        lambda: (v := wav_voiced_seconds(speaker)) > 1.0 and v,
        timeout=30 * SLOW,
    )
    FIGURES["speaker_voiced_s"] = round(voiced, 2)
    status = json.loads(box.sh("/opt/voicebox/venv/bin/voicebox status --json").stdout)
    assert status["conversation"]["id"], f"voicebox status shows no conversation: {status}"


def test_journal_holds_the_event_fields(installed: Appliance) -> None:
    box = installed.box
    installed.wait_active()
    mark = box.cursor()
    installed.start_simulator("1:close:1012:2s")
    installed.wait_journal("voicebox", "1012", after=mark, timeout=60)
    entries = [
        json.loads(line)
        for line in box.journal("-u voicebox -b", output="json").splitlines()
        if line.startswith("{")
    ]
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "voicebox" and "EVENT" in e]
    assert ours, "no journal entry from voicebox has SYSLOG_IDENTIFIER=voicebox and EVENT"
    assert any("STATE" in e for e in ours), "no voicebox journal entry has a STATE field"
    assert any(e.get("CONVERSATION_ID") for e in ours), "no entry has a CONVERSATION_ID field"
    assert any(e.get("CLOSE_CODE") == "1012" for e in ours), (
        "the simulator forced a 1012 but no entry has CLOSE_CODE=1012"
    )
    installed.start_simulator()
    installed.wait_journal(SIM_UNIT, "sim.conversation.started", after=mark, timeout=60)


def test_api_key_in_no_journal_line_nor_environ(installed: Appliance) -> None:
    box = installed.box
    installed.wait_active()
    assert installed.key not in box.journal("-b all", output="export"), (
        "the API key is in the journal"
    )
    pid = installed.main_pid()
    environ = box.sh(f"tr '\\0' '\\n' </proc/{pid}/environ").stdout
    assert installed.key not in environ, "the API key is in the daemon's /proc/PID/environ"
    assert "CREDENTIALS_DIRECTORY=" in environ, "the daemon did not get its key as a credential"


def test_reload_applies_a_changed_value(installed: Appliance) -> None:
    box = installed.box
    pid = int(installed.wait_active()["MainPID"])
    before = json.loads(box.sh("/opt/voicebox/venv/bin/voicebox status --json").stdout)
    assert before["tuning"]["adaptive"] is True
    installed.write_config(installed.config_text(adaptive="false"))
    mark = box.cursor()
    box.sh("systemd-analyze log-level debug")
    try:
        r = box.sh("systemctl reload voicebox", check=False, timeout=60 * SLOW)
    finally:
        box.sh("systemd-analyze log-level info")
    assert r.returncode == 0, f"systemctl reload voicebox failed:\n{r.stderr}"
    log = box.journal("", after=mark)
    reloading = log.find("RELOADING=1")
    assert reloading >= 0, f"systemd got no RELOADING=1 from voicebox:\n{log[-3000:]}"
    assert log.find("READY=1", reloading) > reloading, "no READY=1 after RELOADING=1"
    assert "config.reloaded" in log
    assert installed.main_pid() == pid, "reload restarted the daemon"
    after = json.loads(box.sh("/opt/voicebox/venv/bin/voicebox status --json").stdout)
    assert after["tuning"]["adaptive"] is False, "the reloaded tuning.adaptive did not take effect"


def test_reload_of_a_broken_file_keeps_running(installed: Appliance) -> None:
    box = installed.box
    pid = int(installed.wait_active()["MainPID"])
    good = installed.config_text()
    lines = good.splitlines()
    bad_line = next(i for i, line in enumerate(lines, 1) if "reconnect:" in line)
    lines[bad_line - 1] = "  reconnect: {initial_s: soon}"
    installed.write_config("\n".join(lines) + "\n")
    mark = box.cursor()
    try:
        box.sh("systemctl reload voicebox", check=False, timeout=60 * SLOW)
        errors = installed.wait_journal("voicebox", "config.reload_refused", after=mark)
        time.sleep(1.0)
        errors = box.journal("-u voicebox -p err", after=mark)
        refused = [line for line in errors.splitlines() if "config.reload_refused" in line]
        assert len(refused) == 1, f"expected one error line, got:\n{errors}"
        assert f"{CONFIG}:{bad_line}" in refused[0], f"the error does not name file:line: {refused}"
        p = installed.wait_active()
        assert int(p["MainPID"]) == pid, "a broken reload restarted the daemon"
    finally:
        installed.write_config(good)
        box.sh("systemctl reload voicebox", timeout=60 * SLOW)


def test_watchdog_kills_a_stopped_daemon_and_systemd_restarts_it(installed: Appliance) -> None:
    box = installed.box
    dropin = "/etc/systemd/system/voicebox.service.d/system-test-watchdog.conf"
    box.write(dropin, "[Service]\nWatchdogSec=3s\n")
    try:
        box.sh("systemctl daemon-reload")
        p = _start_fresh(installed)
        pid = int(p["MainPID"])
        restarts = int(box.prop("voicebox", "NRestarts"))
        mark = box.cursor()
        box.sh(f"kill -STOP {pid}")

        def restarted() -> bool:
            q = box.show("voicebox", "NRestarts", "MainPID", "ActiveState", "SubState")
            return (
                int(q["NRestarts"]) > restarts
                and q["MainPID"] not in ("0", str(pid))
                and q["ActiveState"] == "active"
                and q["SubState"] == "running"
            )

        box.wait_for("a watchdog restart", restarted, timeout=90 * SLOW)
        log = box.journal("-u voicebox", after=mark)
        assert "Watchdog timeout" in log, f"the journal does not say watchdog:\n{log[-3000:]}"
        assert "SIGABRT" in log or "ABRT" in log, f"the daemon was not sent SIGABRT:\n{log}"
        assert "Failed with result 'watchdog'" in log, log
    finally:
        box.sh(f"rm -f {dropin} && systemctl daemon-reload")
        _start_fresh(installed)


def test_invalid_config_exits_78_and_is_not_restarted(installed: Appliance) -> None:
    box = installed.box
    good = installed.config_text()
    installed.write_config(good.replace("always_on", "sometimes"))
    try:
        box.sh("systemctl restart voicebox", check=False, timeout=120 * SLOW)
        box.wait_for(
            "voicebox failed", lambda: box.prop("voicebox", "ActiveState") == "failed",
            timeout=30 * SLOW,
        )  # fmt: skip
        p = box.show("voicebox", "Result", "ExecMainStatus", "NRestarts")
        time.sleep(7.0 * SLOW)  # RestartSec=5s: a restart would have happened by now
        q = box.show("voicebox", "Result", "ExecMainStatus", "NRestarts", "ActiveState")
        assert p["ExecMainStatus"] == "78", f"exit status {p['ExecMainStatus']}, expected 78"
        assert p["Result"] == "exit-code", f"Result={p['Result']}"
        assert q["ActiveState"] == "failed" and q["NRestarts"] == p["NRestarts"], (
            f"an exit 78 was restarted: before {p}, after {q}"
        )
        log = box.journal("-u voicebox -b -n 30")
        assert "config.invalid" in log or CONFIG in log, f"no line names the bad config:\n{log}"
    finally:
        installed.write_config(good)
        _start_fresh(installed)


def test_hardening_is_in_force(installed: Appliance) -> None:
    box = installed.box
    pid = int(installed.wait_active()["MainPID"])
    status = box.sh(f"grep NoNewPrivs /proc/{pid}/status").stdout
    assert status.split() == ["NoNewPrivs:", "1"], status
    uid = box.sh("id -u voicebox").stdout.strip()
    gid = box.sh("id -g voicebox").stdout.strip()
    enter = f"nsenter -t {pid} -m -S {uid} -G {gid} --"
    for path in ("/var/lib/voicebox/probe", "/run/voicebox/probe"):
        r = box.sh(f"{enter} sh -c 'echo x > {path} && rm {path}'", check=False)
        assert r.returncode == 0, f"the daemon cannot write {path}: {r.stderr}"
    for path in ("/etc/voicebox/x", "/opt/voicebox/x", "/x", "/usr/x", "/var/x"):
        r = box.sh(f"{enter} sh -c 'echo x > {path}'", check=False)
        assert r.returncode != 0, f"the daemon could write {path} (ProtectSystem not in force)"
    r = box.sh(f"{enter} sh -c 'ls /home /root'", check=False)
    assert r.returncode != 0 or not r.stdout.strip(), "ProtectHome does not hide /home and /root"
    out = box.sh("systemd-analyze security voicebox --no-pager", check=False).stdout
    m = re.search(r"Overall exposure level for voicebox.service: (\d+\.\d+)", out)
    assert m, f"no exposure level in systemd-analyze security:\n{out[-2000:]}"
    FIGURES["security_exposure"] = float(m.group(1))
    assert float(m.group(1)) <= 2.0, f"exposure {m.group(1)} > 2.0"


ASOUND_FILE_NULL = """# written by the system test: ALSA file/null PCMs as the default devices
pcm.!default { type asym  playback.pcm "tofile"  capture.pcm "fromnull" }
pcm.tofile { type file  slave.pcm "null"  file "/var/lib/voicebox/alsa-out.raw"  format "raw" }
pcm.fromnull { type null }
ctl.!default { type hw card 0 }
"""


def test_portaudio_opens_alsa_devices_under_the_sandbox(installed: Appliance) -> None:
    """The real sounddevice backend, not paced (ALSA null/file PCMs): it opens and streams."""
    box = installed.box
    box.write("/etc/asound.conf", ASOUND_FILE_NULL)
    installed.write_config(
        installed.config_text(
            input="{backend: sounddevice, sample_rate: 16000}",
            output="{backend: sounddevice, sample_rate: 16000}",
        )
    )
    raw = box.root / "var/lib/voicebox/alsa-out.raw"
    mark = box.cursor()
    try:
        _start_fresh(installed)
        box.wait_for("PortAudio writing the ALSA file PCM", lambda: raw.exists(), 30 * SLOW)
        size = raw.stat().st_size
        box.wait_for("the ALSA file PCM growing", lambda: raw.stat().st_size > size, 30 * SLOW)
        installed.wait_active()
        log = box.journal("-u voicebox", after=mark)
        assert "audio.unavailable" not in log, f"PortAudio did not open the device:\n{log}"
        assert "Operation not permitted" not in log and "EPERM" not in log, log
        assert "daemon.ready" in log
    finally:
        box.sh("rm -f /etc/asound.conf /var/lib/voicebox/alsa-out.raw")
        installed.write_config(installed.config_text())
        _start_fresh(installed)


def test_stop_is_clean_and_closes_1000(installed: Appliance) -> None:
    box = installed.box
    installed.wait_active()

    def conversation() -> str | None:
        m = re.search(r"conv=(\S+)", box.prop("voicebox", "StatusText"))
        return m.group(1) if m else None

    conv = box.wait_for("a live conversation", conversation, 60 * SLOW)
    mark = box.cursor()
    t0 = time.monotonic()
    box.sh("systemctl stop voicebox", timeout=60 * SLOW)
    FIGURES["stop_s"] = round(time.monotonic() - t0, 2)
    p = box.show("voicebox", "Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    assert p["ActiveState"] == "inactive" and p["Result"] == "success", p
    assert p["ExecMainStatus"] == "0", f"the daemon exited {p['ExecMainStatus']} on stop"
    log = box.journal("-u voicebox", after=mark)
    assert "State 'stop-sigterm' timed out" not in log, "the stop ran into TimeoutStopSec"

    def closed() -> str | None:
        lines = box.journal(f"-u {SIM_UNIT} -b").splitlines()
        mine = [
            x for x in lines if "sim.connection.closed" in x and f"conversation_id={conv} " in x
        ]
        return mine[-1] if mine else None

    line = box.wait_for(f"the simulator closing {conv}", closed, 20 * SLOW)
    assert "close_code=1000" in line and "closed_by=client" in line, line


def test_starts_on_boot(installed: Appliance, box: Box) -> None:
    box.sh("systemctl start voicebox")
    box.poweroff()
    box.boot()
    p = box.show(
        "voicebox", "ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "StatusText"
    )
    userspace = box.prop("", "UserspaceTimestampMonotonic")
    assert (p["ActiveState"], p["SubState"]) == ("active", "running"), (
        f"after a reboot voicebox is {p['ActiveState']} ({p['SubState']}): not started on boot"
    )
    FIGURES["boot_to_ready_s"] = round(
        _mono_s(p["ActiveEnterTimestampMonotonic"]) - _mono_s(userspace), 3
    )
    mark = box.cursor()
    installed.start_simulator()  # the "cloud" comes back; nobody touches voicebox
    installed.wait_journal(SIM_UNIT, "sim.turn", after=mark, timeout=90)


def test_reinstall_upgrades_in_place(installed: Appliance) -> None:
    box = installed.box
    marker = "# kept across upgrades\n"
    installed.write_config(installed.config_text() + marker)
    cred_before = box.sh("sha256sum /etc/voicebox/credentials/elevenlabs_api_key").stdout
    pid = installed.main_pid()
    r = box.sh("cd /root/voicebox && sudo scripts/install.sh", check=False, timeout=900 * SLOW)
    assert r.returncode == 0, f"re-running install.sh failed:\n{(r.stdout + r.stderr)[-3000:]}"
    assert marker in box.read(CONFIG), "re-running install.sh replaced the user's config"
    cred_after = box.sh("sha256sum /etc/voicebox/credentials/elevenlabs_api_key").stdout
    assert cred_after == cred_before, "re-running install.sh changed the credential"
    p = installed.wait_active()
    assert int(p["MainPID"]) != pid, "the upgrade did not restart the daemon on the new code"


def test_uninstall_removes_service_venv_user_and_keeps_etc(installed: Appliance) -> None:
    box = installed.box
    r = box.sh("cd /root/voicebox && sudo scripts/install.sh --uninstall", check=False)
    assert r.returncode == 0, f"install.sh --uninstall failed:\n{r.stdout}{r.stderr}"
    assert box.sh("systemctl cat voicebox", check=False).returncode != 0, "the unit is still there"
    assert box.sh("test -e /opt/voicebox", check=False).returncode != 0, "/opt/voicebox remains"
    assert box.sh("getent passwd voicebox", check=False).returncode != 0, "the user remains"
    assert box.sh(f"test -s {CONFIG}", check=False).returncode == 0, "the config was removed"
    cred = box.sh("test -s /etc/voicebox/credentials/elevenlabs_api_key", check=False)
    assert cred.returncode == 0, "the credential was removed"
