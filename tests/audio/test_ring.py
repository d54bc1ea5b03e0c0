"""SampleRing: order, counts, both overflow policies, resize, and a two-thread stress run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebox.audio.ring import SampleRing


def seq(start: int, n: int) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_write_read_wraps_in_order() -> None:
    ring = SampleRing(8)
    out = np.zeros(8, dtype=np.int16)
    assert ring.write(seq(0, 6)) == 0
    assert ring.read_into(out[:4]) == 4
    assert ring.write(seq(6, 6)) == 0  # wraps around the end of the array
    assert ring.available == 8
    assert ring.read_into(out) == 8
    assert out.tolist() == list(range(4, 12))
    assert ring.read_into(out) == 0


def test_drop_newest_counts_exactly() -> None:
    ring = SampleRing(10, "drop_newest")
    assert ring.write(seq(0, 7)) == 0
    assert ring.write(seq(7, 7)) == 4
    assert ring.dropped == 4
    out = np.zeros(10, dtype=np.int16)
    ring.read_into(out)
    assert out.tolist() == list(range(10))  # what was queued stays intact


def test_drop_oldest_keeps_newest() -> None:
    ring = SampleRing(10, "drop_oldest")
    ring.write(seq(0, 7))
    assert ring.write(seq(7, 7)) == 4
    assert ring.write(seq(14, 25)) == 25  # block larger than the ring: its newest 10 survive
    out = np.zeros(10, dtype=np.int16)
    assert ring.read_into(out) == 10
    assert out.tolist() == list(range(29, 39))
    assert ring.dropped == 29


def test_clear_and_resize() -> None:
    ring = SampleRing(10)
    ring.write(seq(0, 8))
    assert ring.clear() == 8
    assert ring.available == 0
    ring.write(seq(0, 8))
    ring.resize(20)
    ring.write(seq(8, 10))
    out = np.zeros(20, dtype=np.int16)
    assert ring.read_into(out) == 18
    assert out[:18].tolist() == list(range(18))
    ring.write(seq(0, 6))
    ring.resize(4)  # shrinking keeps the newest samples and counts the rest as dropped
    assert ring.read_into(out) == 4
    assert out[:4].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError):
        ring.resize(0)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 40),
    policy=st.sampled_from(["drop_newest", "drop_oldest"]),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=40),
)
def test_any_interleaving_matches_a_model(capacity: int, policy: str, ops: list) -> None:
    ring = SampleRing(capacity, policy)  # type: ignore[arg-type]
    model: list[int] = []
    dropped = 0
    counter = 0
    for is_write, n in ops:
        if is_write:
            block = list(range(counter, counter + n))
            counter += n
            free = capacity - len(model)
            if policy == "drop_newest":
                lost = max(0, n - free)
                model += block[: n - lost]
            else:
                model += block
                lost = max(0, len(model) - capacity)
                model = model[lost:]
            dropped += lost
            assert ring.write(np.array([b % 30000 for b in block], dtype=np.int16)) == lost
        else:
            out = np.zeros(n, dtype=np.int16)
            got = ring.read_into(out)
            assert got == min(n, len(model))
            assert out[:got].tolist() == [b % 30000 for b in model[:got]]
            model = model[got:]
        assert ring.available == len(model)
    assert ring.dropped == dropped


def test_two_threads_no_loss_no_reorder_no_torn_reads() -> None:
    """A producer and a consumer thread exchange a sequence counter through a small ring."""
    total = 1_000_000
    ring = SampleRing(997)
    received = np.zeros(total, dtype=np.int16)
    errors: list[str] = []

    def producer() -> None:
        sent = 0
        sizes = [1, 7, 160, 320, 513]
        i = 0
        while sent < total:
            n = min(sizes[i % len(sizes)], total - sent, 997 - ring.available)
            i += 1
            if n <= 0:
                time.sleep(0)  # let the consumer run
                continue
            if ring.write(seq(sent, n)) != 0:
                errors.append("overflow although the space was free")
                return
            sent += n

    def consumer() -> None:
        got = 0
        out = np.zeros(300, dtype=np.int16)
        while got < total:
            n = ring.read_into(out[: 1 + got % 299])
            if n == 0:
                time.sleep(0)
            received[got : got + n] = out[:n]
            got += n

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert np.array_equal(received, seq(0, total))
    assert ring.written == ring.consumed == total
    assert ring.dropped == 0
