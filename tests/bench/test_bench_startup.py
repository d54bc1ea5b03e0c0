"""bench_startup.py's reading of `python -X importtime`: every module's own time is counted
once, by its top-level package, and other stderr lines (the daemon's log) are ignored."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def test_importtime_lines_sum_own_time_per_package(repo: Path) -> None:
    path = repo / "bench/bench_startup.py"
    spec = importlib.util.spec_from_file_location("bench_startup", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    text = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:      1500 |       1500 |     numpy.core",
            "import time:       500 |       2000 |   numpy",
            '{"event": "audio.stream_opened", "kind": "input"}',
            "import time:      3000 |       5000 | voicebox.daemon.run",
        ]
    )
    imports = bench.parse_importtime(text)
    assert imports.modules == 3
    assert imports.total_ms == 5.0  # own times only: cumulative would count numpy twice
    assert imports.top == {"numpy": 2.0, "voicebox": 3.0}
