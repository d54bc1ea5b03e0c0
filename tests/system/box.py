"""A booted Debian 12 container (systemd-nspawn) and the commands a user would run inside it.

`Box` boots the root that scripts/system-test.sh prepared (a fresh overlay over the cached
root), finds the container's PID 1, runs commands inside through `nsenter`, powers it off and
boots it again, and always leaves no nspawn process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class BoxError(AssertionError):
    """A command inside the container failed, or something did not happen in time."""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _is_pid1_of_a_namespace(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
    return bool(m) and len(m.group(1).split()) > 1 and m.group(1).split()[-1] == "1"


class Box:
    """One container root: `boot()` starts it, `sh()` runs a command inside, `poweroff()` ends."""

    def __init__(self, root: Path, artefacts: Path, boot_timeout_s: float = 120.0) -> None:
        self.root = root
        self.artefacts = artefacts
        self.boot_timeout_s = boot_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.boots = 0
        self.boot_seconds: list[float] = []

    # --- lifecycle -----------------------------------------------------------------------

    def boot(self) -> None:
        assert self.proc is None, "already booted"
        self.boots += 1
        console = open(self.artefacts / f"console-{self.boots}.log", "wb")  # noqa: SIM115
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="0")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn",
                "--directory",
                str(self.root),
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                f"--machine=voicebox-test-{os.getpid()}",
                "--boot",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        console.close()
        pidfile = os.environ.get("VOICEBOX_SYSTEM_NSPAWN_PIDFILE")
        if pidfile:  # the shell wrapper kills it if this process dies without cleaning up
            Path(pidfile).write_text(f"{self.proc.pid}\n")
        self.leader = self._wait_leader()
        # "offline" until the manager's private socket is up
        state = self.sh(
            "for i in $(seq 600); do s=$(systemctl is-system-running --wait); "
            '[ "$s" = offline ] || [ -z "$s" ] || break; sleep 0.1; done; echo "$s"',
            check=False,
            timeout=self.boot_timeout_s,
        ).stdout.strip()
        self.boot_seconds.append(time.monotonic() - t0)
        if state not in ("running", "degraded"):
            raise BoxError(f"the container did not finish booting: is-system-running={state!r}")
        if state == "degraded":
            failed = self.sh("systemctl --failed --no-legend --plain", check=False).stdout
            raise BoxError(f"the container booted degraded; failed units:\n{failed}")

    def _wait_leader(self) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + self.boot_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.artefacts / f"console-{self.boots}.log").read_text(errors="replace")
                raise BoxError(f"systemd-nspawn exited with {self.proc.returncode}:\n{log[-3000:]}")
            for pid in _descendants(self.proc.pid):
                # PID 1 once it is systemd (before its execve nspawn is still setting it up)
                if _is_pid1_of_a_namespace(pid) and _comm(pid) == "systemd":
                    return pid
            time.sleep(0.05)
        raise BoxError("systemd-nspawn started no init within the boot timeout")

    def poweroff(self, timeout_s: float = 90.0) -> None:
        """`systemctl poweroff` inside; SIGTERM then SIGKILL to nspawn if it does not end."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                self._nsenter(["systemctl", "poweroff"], timeout=30)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(30)
        self.leader = 0

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    # --- commands ------------------------------------------------------------------------

    def _nsenter(
        self, argv: Sequence[str], timeout: float, input_: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        assert self.leader, "the container is not running"
        cmd = ["nsenter", "-t", str(self.leader), "-a", "env", "-i"]
        cmd += [f"{k}={v}" for k, v in CONTAINER_ENV.items()]
        return subprocess.run(
            [*cmd, *argv], input=input_, capture_output=True, timeout=timeout, cwd="/"
        )

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120.0, input_: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `script` with bash inside the container, as root, in /root."""
        try:
            r = self._nsenter(
                ["bash", "-c", f"cd /root && {script}"],
                timeout,
                input_.encode() if input_ is not None else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise BoxError(f"timed out after {timeout:g} s inside the container: {script}") from exc
        out = subprocess.CompletedProcess(
            r.args,
            r.returncode,
            r.stdout.decode(errors="replace"),
            r.stderr.decode(errors="replace"),
        )
        if check and out.returncode != 0:
            raise BoxError(
                f"inside the container `{script}` exited {out.returncode}\n"
                f"stdout:\n{out.stdout[-3000:]}\nstderr:\n{out.stderr[-3000:]}"
            )
        return out

    def show(self, unit: str, *props: str) -> dict[str, str]:
        args = " ".join(f"-p {p}" for p in props)
        out = self.sh(f"systemctl show {unit} {args}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def prop(self, unit: str, name: str) -> str:
        return self.show(unit, name).get(name, "")

    def cursor(self) -> str:
        """A mark for "entries logged from now on": a --since value 1 µs after the last entry.

        Not --after-cursor: journalctl 252 finds nothing when that cursor's entry does not itself
        match the other filters (-u, -t).
        """
        out = self.sh("journalctl -n 0 --show-cursor --no-pager").stdout
        m = re.search(r"-- cursor: \S*;t=([0-9a-f]+)", out)
        if not m:
            return ""
        us = int(m.group(1), 16) + 1
        return f"@{us // 1_000_000}.{us % 1_000_000:06d}"

    def journal(self, args: str = "", after: str = "", output: str = "short-monotonic") -> str:
        since = f"--since={after}" if after else ""
        return self.sh(f"journalctl --no-pager -o {output} {since} {args}", timeout=120).stdout

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write a file inside the container (through the host's view of its root)."""
        host = self.root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(text, encoding="utf-8")
        host.chmod(mode)

    def read(self, path: str) -> str:
        return self.sh(f"cat {path}").stdout

    def wait_for(
        self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5
    ) -> T:
        """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        last: T | None = None
        while True:
            last = probe()
            if last:
                return last
            if time.monotonic() > deadline:
                raise BoxError(f"{what}: not seen within {timeout:g} s")
            time.sleep(interval)
