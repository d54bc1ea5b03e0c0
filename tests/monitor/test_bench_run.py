"""bench/run.py on a tiny fake bench dir: sections, machine info, failures and the exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OK = """import sys
print("Fake codec bench")
print("| figure | value | target |")
print("|---|---|---|")
print(f"| argv | {' '.join(sys.argv[1:]) or '-'} | - |")
"""
FAIL = """import sys
print("Broken bench")
for i in range(100):
    print(f"noise {i}", file=sys.stderr)
print("boom: the device vanished", file=sys.stderr)
sys.exit(3)
"""


def run(repo: Path, bench: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "bench" / "run.py"), "--bench-dir", str(bench), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_aggregates_sections_and_passes_quick(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "bench_a.py").write_text(OK)
    (tmp_path / "bench_b.py").write_text(OK.replace("Fake codec", "Second"))
    (tmp_path / "helper.py").write_text("raise SystemExit(9)\n")  # not a bench_*.py
    proc = run(repo, tmp_path, "--quick")
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "report.md").read_text()
    assert report.strip() in proc.stdout  # printed too
    assert report.startswith("# voicebox benchmark report (--quick)")
    for key in ("- CPU: ", " cores", "- RAM: ", "- Python: ", "- Date: "):
        assert key in report
    assert report.index("## Fake codec bench") < report.index("## Second bench")
    assert "| argv | --quick | - |" in report
    assert "FAILED" not in report


def test_a_failing_script_is_reported_and_the_exit_is_nonzero(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "bench_a.py").write_text(FAIL)
    (tmp_path / "bench_b.py").write_text(OK)
    out = tmp_path / "r.md"
    proc = run(repo, tmp_path, "--out", str(out))
    assert proc.returncode == 1
    report = out.read_text()
    assert "## bench_a.py: FAILED (exit status 3)" in report
    assert "boom: the device vanished" in report
    assert "noise 99" in report and "noise 10\n" not in report  # only the tail
    assert "## Fake codec bench" in report  # the others still run
    assert "| argv | - | - |" in report
    assert "bench_a.py" in proc.stderr
