"""Checks of the machine: the service user's groups and device nodes, GPIO, the systemd unit,
the credential file, the journal, the announcement cache, free space, temperature and the
firmware's throttling bits.

Every path is read under `Host.root` and every command found on `Host.path`, so a temporary root
stands in for the real one; what this machine does not have (systemd, GPIO, a Pi's firmware) is a
warning that says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import stat
import subprocess
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebox import announcements, tts
from voicebox.config import CREDENTIAL_NAME, Config
from voicebox.doctor.report import Check, fail, ok, warn

INSTALL_FIX = "run sudo scripts/install.sh from the voicebox checkout"
BUTTON_WAIT_S = 10.0
DISK_WARN_MB = 200
DISK_FAIL_MB = 20
TEMP_WARN_C = 80.0
TEMP_FAIL_C = 85.0
# vcgencmd get_throttled bits (Raspberry Pi firmware): low half now, high half since boot.
THROTTLE_BITS = {
    0: "under-voltage",
    1: "ARM frequency capped",
    2: "throttled",
    3: "soft temperature limit",
}
POWER_FIX = "use the official 27 W (5 V 5 A) USB-C supply and a short cable; cool the Pi"


@dataclass(frozen=True)
class Host:
    """Where the machine's files and tools are: `root` prefixes every path, `path` is the PATH."""

    root: Path = Path("/")
    user: str = "voicebox"
    unit: str = "voicebox.service"
    path: str | None = None  # None: $PATH

    def file(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def credential(self) -> Path:
        return self.file(f"/etc/voicebox/credentials/{CREDENTIAL_NAME}")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str] | None:
        """Run a tool with a timeout; None when it is not installed or does not answer."""
        exe = shutil.which(argv[0], path=self.path)
        if exe is None:
            return None
        try:
            return subprocess.run(
                [exe, *argv[1:]], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    def systemd_running(self) -> bool:
        return self.file("/run/systemd/system").is_dir()

    def unit_active(self) -> bool:
        """The service is running (and so holds the sound devices and the button pin)."""
        if not self.systemd_running():
            return False
        proc = self.run("systemctl", "is-active", self.unit)
        return proc is not None and proc.stdout.strip() in ("active", "reloading")


# --- users, groups, device nodes -------------------------------------------------------------


def _table(path: Path) -> list[list[str]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def _identity(host: Host) -> tuple[int, set[int], dict[str, int], set[str]] | None:
    """(uid, gids, group name -> gid, names of the user's groups), or None without the user."""
    users = {row[0]: row for row in _table(host.file("/etc/passwd")) if len(row) >= 4}
    row = users.get(host.user)
    if row is None:
        return None
    uid, primary = int(row[2]), int(row[3])
    gids, names, by_name = {primary}, set(), {}
    for g in _table(host.file("/etc/group")):
        if len(g) < 4:
            continue
        by_name[g[0]] = int(g[2])
        if host.user in g[3].split(",") or int(g[2]) == primary:
            gids.add(int(g[2]))
            names.add(g[0])
    return uid, gids, by_name, names


def _can_open(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    """Read and write access by mode bits (device nodes are opened rw)."""
    if st.st_uid == uid:
        bits = stat.S_IRUSR | stat.S_IWUSR
    elif st.st_gid in gids:
        bits = stat.S_IRGRP | stat.S_IWGRP
    else:
        bits = stat.S_IROTH | stat.S_IWOTH
    return st.st_mode & bits == bits


def check_permissions(host: Host) -> list[Check]:
    ident = _identity(host)
    if ident is None:
        return [fail("service user", f"no user {host.user!r} on this machine", INSTALL_FIX)]
    uid, gids, by_name, names = ident
    out: list[Check] = []
    missing_groups = [g for g in ("audio", "gpio") if g not in by_name]
    not_member = [g for g in ("audio", "gpio") if g in by_name and g not in names]
    if missing_groups:
        out.append(
            fail(
                "service user",
                f"no group {', '.join(missing_groups)} on this machine (the unit asks for it)",
                INSTALL_FIX + " (it creates the gpio group)",
            )
        )
    elif not_member:
        out.append(
            warn(
                "service user",
                f"{host.user} is not in group {', '.join(not_member)}",
                f"sudo usermod -aG audio,gpio {host.user}",
            )
        )
    else:
        out.append(ok("service user", f"{host.user} (uid {uid}) is in groups audio and gpio"))
    nodes = sorted(
        p
        for pattern in ("dev/snd/*", "dev/gpiochip*")
        for p in host.root.glob(pattern)
        if not p.is_dir()
    )
    if not nodes:
        out.append(
            warn(
                "device nodes",
                "no /dev/snd or /dev/gpiochip* nodes on this machine: cannot check",
                "on the Pi, check that the sound card and GPIO drivers load (aplay -l, gpiodetect)",
            )
        )
        return out
    closed = []
    for node in nodes:
        try:
            if not _can_open(node.stat(), uid, gids):
                closed.append("/" + str(node.relative_to(host.root)))
        except OSError:
            continue
    if closed:
        out.append(
            fail(
                "device nodes",
                f"{host.user} cannot open {', '.join(closed[:4])}"
                + (f" and {len(closed) - 4} more" if len(closed) > 4 else ""),
                f"add {host.user} to the node's group (sudo usermod -aG audio,gpio {host.user})",
            )
        )
    else:
        out.append(ok("device nodes", f"{len(nodes)} nodes under /dev open for {host.user}"))
    return out


# --- GPIO ------------------------------------------------------------------------------------


def board_model(host: Host) -> str:
    try:
        raw = host.file("/proc/device-tree/model").read_bytes()
    except OSError:
        return ""
    return raw.rstrip(b"\x00\n").decode(errors="replace")


def check_lgpio(host: Host) -> Check:
    model = board_model(host)
    if "Raspberry Pi" not in model:
        return warn(
            "lgpio",
            f"not a Raspberry Pi ({model or 'no device-tree model'}): cannot check",
            "nothing to do here; on a Pi 5 lgpio (python3-lgpio) is needed",
        )
    if "Raspberry Pi 5" in model and importlib.util.find_spec("lgpio") is None:
        return fail(
            "lgpio",
            f"{model}: lgpio is not installed (gpiozero cannot drive a Pi 5 without it)",
            "sudo apt install python3-lgpio (install.sh does)",
        )
    return ok("lgpio", f"{model}: lgpio present")


def wait_for_press(button: Any, timeout_s: float) -> bool:
    """True once the gpiozero button is pressed within timeout_s."""
    pressed = threading.Event()
    button.when_pressed = pressed.set
    if button.is_pressed:
        pressed.set()
    return pressed.wait(timeout_s)


def open_button(pin: int, active_low: bool, pin_factory: Any = None) -> Any:
    """A gpiozero Button on the pin; raises ImportError-like errors where there is no GPIO."""
    from gpiozero import Button

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Button(pin, pull_up=active_low, pin_factory=pin_factory)


def check_button(
    cfg: Config,
    pin_factory: Any = None,
    press: bool = False,
    say: Callable[[str], None] = print,
    wait_s: float = BUTTON_WAIT_S,
) -> Check:
    b = cfg.gpio.button
    if b.pin is None:
        return ok("button", "no button configured (gpio.button.pin: null)")
    try:
        button = open_button(b.pin, b.active_low, pin_factory)
    except ImportError as exc:  # gpiozero's BadPinFactory: no GPIO on this machine
        return warn(
            "button",
            f"no GPIO on this machine ({exc}): cannot read pin {b.pin}",
            "on a Pi install python3-lgpio; elsewhere use `voicebox run --simulate-button`",
        )
    except Exception as exc:
        return fail(
            "button",
            f"pin {b.pin}: {type(exc).__name__}: {exc}",
            "stop voicebox if it holds the pin (systemctl stop voicebox), or choose another pin",
        )
    try:
        state = "pressed" if button.is_pressed else "released"
        if not press:
            if state == "pressed":
                return warn(
                    "button",
                    f"BCM pin {b.pin} reads pressed at rest",
                    "check the wiring and gpio.button.active_low",
                )
            return ok("button", f"BCM pin {b.pin} reads {state}")
        say(f"press the button on BCM pin {b.pin} now ({wait_s:g} s)...")
        if wait_for_press(button, wait_s):
            return ok("button", f"BCM pin {b.pin}: press seen")
        return fail(
            "button",
            f"BCM pin {b.pin}: no press in {wait_s:g} s",
            "check the wiring (pin to ground for active_low) and gpio.button.pin",
        )
    finally:
        with contextlib.suppress(Exception):
            button.close()


# --- systemd, credential, journal ------------------------------------------------------------


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (Key=Value lines) as a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


_SPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def timespan_s(text: str) -> float:
    """A systemd time span as `systemctl show` prints it ("30s", "1min 30s", "30000000")."""
    text = text.strip()
    if text.isdigit():
        return int(text) / 1e6  # a raw microsecond count
    total = 0.0
    for part in text.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = part[len(number) :] or "s"
        try:
            total += float(number) * _SPAN_UNITS[unit]
        except (KeyError, ValueError):
            return 0.0
    return total


SHOW_PROPS = (
    "LoadState,UnitFileState,ActiveState,SubState,Result,ExecMainStatus,ExecMainCode,"
    "NRestarts,WatchdogUSec"
)


def check_systemd(host: Host) -> list[Check]:
    unit_file = next(
        (
            p
            for p in (
                host.file(f"/etc/systemd/system/{host.unit}"),
                host.file(f"/lib/systemd/system/{host.unit}"),
            )
            if p.is_file()
        ),
        None,
    )
    if unit_file is None:
        return [fail("unit", f"{host.unit} is not installed", INSTALL_FIX)]
    out = [ok("unit", f"installed: /{unit_file.relative_to(host.root)}")]
    wants = host.file(f"/etc/systemd/system/multi-user.target.wants/{host.unit}")
    if wants.exists() or wants.is_symlink():
        out.append(ok("enabled", "starts on boot"))
    else:
        out.append(
            warn(
                "enabled",
                "not enabled: it will not start on boot",
                "sudo systemctl enable voicebox",
            )
        )
    watchdog_line = _watchdog_in_unit(unit_file)
    if not host.systemd_running():
        out.append(
            warn(
                "systemd",
                "systemd is not running on this machine: state, exit status, restarts and the "
                "watchdog cannot be checked",
                "run doctor on the appliance itself, booted with systemd",
            )
        )
        out.append(watchdog_line)
        return out
    proc = host.run("systemctl", "show", host.unit, f"--property={SHOW_PROPS}")
    if proc is None or proc.returncode != 0:
        out.append(warn("systemd", "systemctl show did not answer", "check: systemctl status"))
        return out
    props = parse_show(proc.stdout)
    out.extend(_service_state(props))
    out.append(_restarts(host, props))
    seconds = timespan_s(props.get("WatchdogUSec", ""))
    if seconds:
        out.append(ok("watchdog", f"armed: {seconds:g} s"))
    else:
        out.append(
            warn(
                "watchdog",
                "not armed (WatchdogUSec=0): a hung daemon would not be restarted",
                "keep WatchdogSec=30s in the unit; remove drop-ins that clear it",
            )
        )
    return out


def _watchdog_in_unit(unit_file: Path) -> Check:
    try:
        text = unit_file.read_text(encoding="utf-8")
    except OSError as exc:
        return warn("watchdog", f"cannot read the unit: {exc}", INSTALL_FIX)
    for line in text.splitlines():
        if line.strip().startswith("WatchdogSec=") and line.split("=", 1)[1].strip() not in (
            "",
            "0",
        ):
            return ok("watchdog", f"set in the unit: {line.strip()}")
    return warn("watchdog", "the unit sets no WatchdogSec=", INSTALL_FIX)


def _service_state(props: dict[str, str]) -> list[Check]:
    state = props.get("ActiveState", "unknown")
    sub = props.get("SubState", "")
    code = props.get("ExecMainStatus", "0")
    logs_fix = "read why: journalctl -u voicebox -b -n 50"
    if state == "active":
        checks = [ok("active", f"active ({sub})")]
    elif state in ("activating", "reloading"):
        checks = [warn("active", f"{state} ({sub})", "wait a few seconds and run doctor again")]
    elif state == "failed":
        checks = [fail("active", f"failed ({props.get('Result', '')})", logs_fix)]
    else:
        checks = [warn("active", f"{state}: not running", "sudo systemctl start voicebox")]
    if code in ("", "0"):
        checks.append(ok("last exit", "status 0"))
    elif code == "78":
        checks.append(
            fail(
                "last exit",
                "status 78 (EX_CONFIG): the config or the API key was refused",
                "fix what `voicebox doctor` reports above, then: sudo systemctl restart voicebox",
            )
        )
    else:
        how = props.get("ExecMainCode", "")
        checks.append(warn("last exit", f"status {code} (code {how})", logs_fix))
    return checks


def _restarts(host: Host, props: dict[str, str]) -> Check:
    total = props.get("NRestarts", "0")
    proc = host.run(
        "journalctl", "-u", host.unit, "--since", "-1h", "-o", "cat", "-q", "--no-pager"
    )
    if proc is None or proc.returncode != 0:
        if total not in ("", "0"):
            return warn(
                "restarts",
                f"{total} automatic restarts since it was started",
                "read why: journalctl -u voicebox -b",
            )
        return ok("restarts", "none since it was started")
    hour = sum(1 for line in proc.stdout.splitlines() if "Scheduled restart job" in line)
    if hour:
        return warn(
            "restarts",
            f"{hour} automatic restarts in the last hour ({total} since started)",
            "read why: journalctl -u voicebox --since -1h",
        )
    return ok("restarts", f"none in the last hour ({total} since started)")


def check_credential(host: Host) -> Check:
    path = host.credential
    shown = f"/{path.relative_to(host.root)}"
    fix = "store the key with `sudo voicebox setup` (or install.sh --api-key-file FILE)"
    try:
        st = path.stat()
    except PermissionError:
        return warn("credential", f"{shown}: cannot look (not root)", "run doctor with sudo")
    except OSError:
        return fail("credential", f"{shown} is missing", fix)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_size == 0:
        return fail("credential", f"{shown} is empty", fix)
    if mode != 0o600:
        return fail(
            "credential", f"{shown} has mode {mode:04o}, not 0600", f"sudo chmod 600 {shown}"
        )
    if st.st_uid != 0:
        return warn(
            "credential",
            f"{shown} is owned by uid {st.st_uid}, not root",
            f"sudo chown root:root {shown}",
        )
    return ok("credential", f"{shown}: root, 0600")


def journal_storage(host: Host) -> str:
    """journald's Storage= (last setting wins over the drop-ins), default "auto"."""
    storage = "auto"
    conf = [host.file("/etc/systemd/journald.conf")]
    conf += sorted(host.file("/etc/systemd/journald.conf.d").glob("*.conf"))
    for f in conf:
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "Storage":
                storage = value.strip()
    return storage


def check_journal(host: Host) -> Check:
    storage = journal_storage(host)
    has_dir = host.file("/var/log/journal").is_dir()
    fix = (
        "make it persistent: sudo mkdir -p /var/log/journal && "
        "sudo systemctl restart systemd-journald"
    )
    if storage == "persistent" or (storage == "auto" and has_dir):
        return ok("journal", "persistent: logs survive a reboot")
    if storage in ("volatile", "none"):
        return warn(
            "journal",
            f"Storage={storage}: logs are lost on reboot",
            "set Storage=persistent in /etc/systemd/journald.conf and restart systemd-journald",
        )
    return warn("journal", "volatile (no /var/log/journal): logs are lost on reboot", fix)


# --- announcements, disk, temperature, throttling --------------------------------------------


def check_cache(cfg: Config, host: Host) -> Check:
    if not cfg.announcements.enabled:
        return ok("announcements", "disabled")
    fmt = tts.synthesis_format(cfg)
    try:
        rate = tts.pcm_rate(fmt)
    except tts.TtsError as exc:
        return fail("announcements", str(exc), "set tts.output_format to a pcm_<rate> format")
    cache = announcements.PhraseCache(host.file(str(announcements.cache_dir(cfg))))
    phrases = {t for name in announcements.EVENTS if (t := announcements.phrase_for(cfg, name))}
    missing = [
        t for t in sorted(phrases) if cache.load(announcements.cache_key(cfg, t, fmt), rate) is None
    ]
    if not phrases:
        return ok("announcements", "no phrases configured")
    if missing:
        return warn(
            "announcements",
            f"{len(missing)} of {len(phrases)} phrases not cached in "
            f"{announcements.cache_dir(cfg)} "
            "(spoken live, or as tones when offline)",
            "nothing breaks (a phrase is cached when first spoken); to fill it now re-run "
            "sudo scripts/install.sh, which prefetches them as the voicebox user",
        )
    return ok("announcements", f"all {len(phrases)} phrases cached ({fmt})")


def check_disk(cfg: Config, host: Host) -> Check:
    state = host.file(cfg.paths.state_dir)
    probe = state
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return warn("free space", f"{state}: {exc}", "check paths.state_dir")
    free_mb = usage.free / 1e6
    shown = cfg.paths.state_dir
    where = shown if probe == state else f"{shown} (missing)"
    text = f"{where}: {free_mb:,.0f} MB free"
    fix = "free space: sudo journalctl --vacuum-size=100M; sudo apt clean"
    if free_mb < DISK_FAIL_MB:
        return fail("free space", text, fix)
    if free_mb < DISK_WARN_MB:
        return warn("free space", text, fix)
    if probe != state:
        return warn("free space", text, INSTALL_FIX + " (it creates the state directory)")
    return ok("free space", text)


def check_temperature(host: Host) -> Check:
    path = host.file("/sys/class/thermal/thermal_zone0/temp")
    try:
        celsius = int(path.read_text().strip()) / 1000
    except (OSError, ValueError):
        return warn(
            "temperature",
            "no thermal sensor readable on this machine: cannot check",
            "nothing to do off a Pi; on a Pi check /sys/class/thermal",
        )
    text = f"{celsius:.1f} °C"
    fix = "add a heatsink or the active cooler, and give the case airflow"
    if celsius >= TEMP_FAIL_C:
        return fail("temperature", text + " (the firmware throttles here)", fix)
    if celsius >= TEMP_WARN_C:
        return warn("temperature", text + " (close to throttling)", fix)
    return ok("temperature", text)


def throttle_flags(value: int) -> tuple[list[str], list[str]]:
    """(conditions now, conditions since boot) from the firmware's get_throttled bits."""
    now = [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]
    since = [name for bit, name in THROTTLE_BITS.items() if value & (1 << (bit + 16))]
    return now, since


def read_throttled(host: Host) -> int | None:
    sysfs = host.file("/sys/devices/platform/soc/soc:firmware/get_throttled")
    with contextlib.suppress(OSError, ValueError):
        return int(sysfs.read_text().strip(), 16)
    proc = host.run("vcgencmd", "get_throttled")
    if proc is not None and proc.returncode == 0 and "=" in proc.stdout:
        with contextlib.suppress(ValueError):
            return int(proc.stdout.split("=", 1)[1].strip(), 16)
    return None


def check_throttling(host: Host) -> Check:
    value = read_throttled(host)
    if value is None:
        return warn(
            "power",
            "no firmware throttling flags (not a Raspberry Pi): cannot check",
            "nothing to do off a Pi; on a Pi: vcgencmd get_throttled",
        )
    now, since = throttle_flags(value)
    if now:
        return fail("power", f"now: {', '.join(now)} (0x{value:x})", POWER_FIX)
    if since:
        return warn("power", f"since boot: {', '.join(since)} (0x{value:x})", POWER_FIX)
    return ok("power", "no under-voltage or throttling since boot (0x0)")
