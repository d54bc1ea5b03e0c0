"""bench_doubletalk.py's yardstick: a window counts as delivered when the processed audio holds
the clean utterance within 6 dB, whatever the processor's delay, and the rest is measured
against the echo."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from tests.audio.echo_rooms import speech_like


def load(repo: Path) -> ModuleType:
    path = repo / "bench/bench_doubletalk.py"
    spec = importlib.util.spec_from_file_location("bench_doubletalk", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_delivered_windows_follow_the_users_level_not_the_delay(repo: Path) -> None:
    bench = load(repo)
    n = 16000 * 6
    near = np.zeros(n)
    near[16000:48000] = speech_like(2.0, seed=1)
    near[64000:80000] = speech_like(1.0, seed=2)
    spans = [(16000, 48000), (64000, 80000)]
    echo = speech_like(6.0, seed=5)
    delay = 120  # what AEC3 and the noise suppressor add

    def delayed(x: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros(delay), x[:-delay]])

    whole = bench.judge(delayed(near + 0.01 * echo), near, echo, spans)
    assert whole.delivered == [1.0, 1.0]
    assert -45 < whole.residual_db < -35  # the echo 40 dB down
    quiet = bench.judge(delayed(0.25 * near), near, echo, spans)  # 12 dB down: not delivered
    assert quiet.delivered == [0.0, 0.0]
    cut = near.copy()
    cut[16000:32000] = 0  # the first utterance's first half suppressed
    half = bench.judge(delayed(cut), near, echo, spans)
    assert 0.4 < half.delivered[0] < 0.6 and half.delivered[1] == 1.0
