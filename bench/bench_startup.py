"""Start-up cost of `voicebox run`, now and at an earlier commit: imports, time to READY, RSS, CPU.

Each round runs the daemon twice from outside, as systemd would (file audio, always_on, the
local simulator, processing off so that only the program's own cost is counted):
- with `python -X importtime` until READY=1, then SIGTERM: the sum of every module's own import
  time (what `voicebox run` imports, lazily or not, before it is ready), the module count, the
  wall time from exec to READY=1, and the slowest top-level packages;
- without it, for --seconds of conversation: the RSS at READY=1, the peak RSS (VmHWM), and the
  CPU (user + system, whole process) from exec to the end.
`voicebox check-config` is timed the same way: a short command should import little.
`--before REV` checks REV out into a temporary worktree and measures it with the same
interpreter and simulator (default: 34d0fa3, the tree before issue 25 split the rooms and made
the phone and setup libraries extras). Medians over --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.daemon.test_daemon import KEY, _config, _input_wav  # noqa: E402
from voicebox.simulator.server import SimConfig, Simulator  # noqa: E402

BEFORE = "34d0fa3"
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \| \s*(\S+)")
PROCESSING_OFF = (
    "  processing: {echo_cancellation: 'off', noise_suppression: 'off', high_pass: false}\n"
)


@dataclass
class Imports:
    """One `-X importtime` run: total own time, module count, own time per top-level package."""

    total_ms: float = 0.0
    modules: int = 0
    top: dict[str, float] = field(default_factory=dict)
    ready_s: float | None = None


def parse_importtime(text: str) -> Imports:
    out = Imports()
    for line in text.splitlines():
        m = IMPORT_LINE.match(line)
        if m is None:
            continue
        own_us, name = int(m[1]), m[2]
        out.total_ms += own_us / 1000
        out.modules += 1
        root = name.split(".")[0]
        out.top[root] = out.top.get(root, 0.0) + own_us / 1000
    return out


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def config_for(tmp: Path, url: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    _input_wav(tmp / "in.wav")
    path = _config(tmp, url, "announcements: {enabled: false}\n")
    text = path.read_text().replace("conversation:\n", PROCESSING_OFF + "conversation:\n", 1)
    path.write_text(text)
    return path


async def wait_ready(notify: socket.socket, guard_s: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(guard_s):
        while True:
            data = await loop.sock_recv(notify, 4096)
            if b"READY=1" in data.split(b"\n"):
                return


async def one_run(
    src: Path, tmp: Path, config: Path, importtime: bool, seconds: float
) -> dict[str, float | Imports]:
    sock_path = tmp / f"notify-{time.monotonic_ns()}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.setblocking(False)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "NOTIFY_SOCKET": str(sock_path),
        "PYTHONPATH": str(src),
    }
    flags = ["-X", "importtime"] if importtime else []
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *flags, "-m", "voicebox", "run", "--config", str(config),
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL, env=env, cwd=src,
    )  # fmt: skip
    assert proc.stderr is not None
    err = asyncio.create_task(proc.stderr.read())
    try:
        await wait_ready(notify)
        ready_s = time.monotonic() - t0
        ps = psutil.Process(proc.pid)
        rss_ready = ps.memory_info().rss / 2**20
        if seconds:
            await asyncio.sleep(seconds)
        cpu = ps.cpu_times()
        peak = vm_hwm_mb(proc.pid)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.wait()
        notify.close()
    text = (await err).decode(errors="replace")
    out: dict[str, float | Imports] = {
        "ready_s": ready_s,
        "rss_ready_mb": rss_ready,
        "rss_peak_mb": peak,
        "cpu_s": float(cpu.user + cpu.system),
    }
    if importtime:
        imports = parse_importtime(text)
        imports.ready_s = ready_s
        out["imports"] = imports
    return out


def command_imports(src: Path, config: Path, *args: str) -> Imports:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(src)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "voicebox", *args, "--config", str(config)],
        capture_output=True, text=True, env=env, cwd=src, timeout=60,
    )  # fmt: skip
    return parse_importtime(proc.stderr)


@dataclass
class Figures:
    label: str
    runs: list[dict[str, float | Imports]] = field(default_factory=list)
    imports: list[Imports] = field(default_factory=list)
    check: list[Imports] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(float(r[key]) for r in self.runs)  # type: ignore[arg-type]

    def import_ms(self) -> float:
        return statistics.median(i.total_ms for i in self.imports)

    def top(self, n: int) -> str:
        best = min(self.imports, key=lambda i: i.total_ms)
        ranked = sorted(best.top.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {ms:.0f}" for name, ms in ranked)


async def measure(label: str, src: Path, tmp: Path, rounds: int, seconds: float) -> Figures:
    figures = Figures(label)
    sim = Simulator(SimConfig(api_key=KEY, first_message="Hello there, how can I help you today?"))
    await sim.start()
    try:
        config = config_for(tmp / label, sim.url)
        for _ in range(rounds):
            run = await one_run(src, tmp / label, config, True, 0.0)
            imports = run["imports"]
            assert isinstance(imports, Imports)
            figures.imports.append(imports)
            figures.runs.append(await one_run(src, tmp / label, config, False, seconds))
            figures.check.append(
                await asyncio.to_thread(command_imports, src, config, "check-config")
            )
    finally:
        await sim.stop()
    return figures


def table(now: Figures, before: Figures | None, seconds: float) -> None:
    def row(name: str, a: float, b: float | None, unit: str, digits: int = 0) -> None:
        fmt = f"{{:.{digits}f}}"
        cell_b = f"{fmt.format(b)} {unit}" if b is not None else "-"
        ratio = f"{a / b:.2f}x" if b else "-"
        print(f"| {name} | {cell_b} | {fmt.format(a)} {unit} | {ratio} |")

    b = before
    print(f"| figure | before ({b.label if b else '-'}) | now ({now.label}) | now / before |")
    print("|---|---|---|---|")
    row("`voicebox run` imports to READY=1, own time summed", now.import_ms(),
        b.import_ms() if b else None, "ms")  # fmt: skip
    row("modules imported by READY=1",
        statistics.median(i.modules for i in now.imports),
        statistics.median(i.modules for i in b.imports) if b else None, "")  # fmt: skip
    row("exec to READY=1 (without -X importtime)", now.median("ready_s") * 1000,
        b.median("ready_s") * 1000 if b else None, "ms")  # fmt: skip
    row("RSS at READY=1", now.median("rss_ready_mb"), b.median("rss_ready_mb") if b else None,
        "MB", 1)  # fmt: skip
    row(f"peak RSS over {seconds:.0f} s of conversation", now.median("rss_peak_mb"),
        b.median("rss_peak_mb") if b else None, "MB", 1)  # fmt: skip
    row(f"CPU, exec to {seconds:.0f} s of conversation, whole process", now.median("cpu_s"),
        b.median("cpu_s") if b else None, "s", 2)  # fmt: skip
    row("`voicebox check-config` imports, own time summed",
        statistics.median(i.total_ms for i in now.check),
        statistics.median(i.total_ms for i in b.check) if b else None, "ms")  # fmt: skip
    print()
    print(f"- Import time by package, `voicebox run`, now (own ms, fastest round): {now.top(8)}")
    if b:
        print(f"- Before: {b.top(8)}")


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev], check=True
    )
    return where


def run(args: argparse.Namespace) -> None:
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        before = None
        if args.before != "none":
            src = worktree(args.before, tmp / "before-src")
            try:
                before = asyncio.run(measure(args.before, src, tmp, rounds, args.seconds))
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(src)],
                    check=False,
                )
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False,
        ).stdout.strip() or "HEAD"  # fmt: skip
        now = asyncio.run(measure(head, ROOT, tmp, rounds, args.seconds))
    print("# Start-up: what `voicebox run` imports, its time to READY=1, its RSS and CPU")
    print()
    print(
        f"{rounds} round(s), medians; {os.cpu_count()} CPUs; file audio, always_on, the local "
        f"simulator, processing off, {args.seconds:.0f} s of conversation after READY=1."
    )
    print()
    table(now, before, args.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=18.0, help="conversation after READY")
    parser.add_argument("--before", default=BEFORE, help="a commit to compare with, or none")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
