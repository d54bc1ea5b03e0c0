"""`make bench`: runs every bench_*.py, each in its own process, and writes bench/report.md.

Each script prints a title line then a markdown table. The report starts with the machine it ran
on, then one section per script; a script that fails (or times out) gets a section with its exit
status and the tail of its stderr, and this runner exits 1 after writing the report.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from voicebox.monitor import SystemReader

HERE = Path(__file__).resolve().parent
STDERR_TAIL = 30  # lines


def machine_info() -> list[str]:
    """CPU model, cores, RAM, Python, OS and date, one markdown bullet each."""
    reader = SystemReader()
    board = reader.model()
    cpu = reader.cpu_model() or platform.processor() or platform.machine()
    cpu = f"{board} ({cpu})" if board else cpu
    ram = f"{reader.ram_mb() / 1024:.1f} GiB"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- CPU: {cpu}, {reader.cores()} cores",
        f"- RAM: {ram}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- OS: {platform.system()} {platform.release()} {platform.machine()}",
        f"- Load average at start: {load}",
        f"- Date: {now}",
    ]


def run_script(path: Path, quick: bool, timeout_s: float) -> tuple[str, bool, float]:
    """Run one script; returns (markdown section, ok, seconds)."""
    cmd = [sys.executable, str(path)] + (["--quick"] if quick else [])
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, cwd=path.parent.parent
        )
        rc: int | None = proc.returncode
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
    took = time.monotonic() - start
    lines = out.strip().splitlines()
    if rc == 0 and lines:
        title = lines[0].lstrip("#").strip()
        body = "\n".join(lines[1:]).strip()
        section = f"## {title}\n\n_{path.name}, {took:.0f} s_\n\n{body}\n"
        return section, True, took
    status = f"timed out after {timeout_s:.0f} s" if rc is None else f"exit status {rc}"
    if rc == 0:
        status = "printed nothing"
    tail = "\n".join(err.rstrip().splitlines()[-STDERR_TAIL:]) or "(no stderr)"
    section = (
        f"## {path.name}: FAILED ({status})\n\n"
        f"_{took:.0f} s; last {STDERR_TAIL} lines of stderr:_\n\n```\n{tail}\n```\n"
    )
    return section, False, took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--bench-dir", type=Path, default=HERE, help="where the bench_*.py are")
    parser.add_argument("--out", type=Path, default=None, help="report path (BENCH_DIR/report.md)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per-script limit, seconds")
    parser.add_argument("--only", action="append", default=[], help="run only bench_NAME.py")
    args = parser.parse_args(argv)
    out = args.out or args.bench_dir / "report.md"
    scripts = sorted(args.bench_dir.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    if not scripts:
        print(f"no bench_*.py in {args.bench_dir}", file=sys.stderr)
        return 1
    sections, failed = [], []
    for script in scripts:
        print(f"bench: running {script.name} ...", file=sys.stderr, flush=True)
        section, ok, took = run_script(script, args.quick, args.timeout)
        print(f"bench: {script.name} {'ok' if ok else 'FAILED'} in {took:.0f} s", file=sys.stderr)
        sections.append(section)
        if not ok:
            failed.append(script.name)
    mode = " (--quick)" if args.quick else ""
    report = "\n".join(
        [f"# voicebox benchmark report{mode}", "", *machine_info(), "", *sections]
        + ([f"**Failed:** {', '.join(failed)}", ""] if failed else [])
    )
    out.write_text(report)
    print(report)
    if failed:
        print(f"bench: {len(failed)} script(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
