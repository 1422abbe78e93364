"""serve.lanes: what goes into one batch, and what never does."""
from __future__ import annotations

import threading
import time

import pytest

from tourney.serve.lanes import Lane, LaneConfig

from tests.waiting import wait_until


class Recorder:
    def __init__(self, sleep_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.batches: list[tuple[object, list]] = []
        self.sleep_s, self.gate = sleep_s, gate

    def __call__(self, key, payloads):
        if self.gate is not None:
            self.gate.wait(60)
        self.batches.append((key, list(payloads)))
        time.sleep(self.sleep_s)
        return [f"{key}:{p}" for p in payloads]


def test_items_arriving_together_share_a_batch_up_to_its_size():
    run = Recorder()
    lane = Lane("m", run, LaneConfig(max_batch=3, window_s=2.0))  # a stalled test thread still fills a batch
    futs = [lane.submit("k", i) for i in range(5)]
    assert [f.result(60) for f in futs] == [f"k:{i}" for i in range(5)]
    assert [p for _, p in run.batches] == [[0, 1, 2], [3, 4]]  # in arrival order; the full batch left at once
    lane.close()


def test_keys_never_mix_and_the_window_bounds_the_wait():
    run = Recorder()
    # two requests in flight per key: each batch leaves as soon as its two are in, never mixed,
    # however the test thread is scheduled (a 10 ms window split them on a loaded machine)
    lane = Lane("m", run, LaneConfig(max_batch=8, window_s=30.0), crowd=lambda: 2)
    futs = [lane.submit(k, i) for i, k in enumerate("abab")]
    assert [f.result(60) for f in futs] == ["a:0", "b:1", "a:2", "b:3"]
    assert sorted((k, p) for k, p in run.batches) == [("a", [0, 2]), ("b", [1, 3])]
    lane.close()


def test_items_cancelled_before_a_worker_takes_them_are_dropped():
    gate = threading.Event()
    run = Recorder(gate=gate)
    lane = Lane("m", run, LaneConfig(max_batch=1, window_s=0.0))
    first = lane.submit("k", 0)  # taken by the worker, which waits on the gate
    wait_until(lambda: first.running(), "the worker to take the first item")
    late = lane.submit("k", 1)
    assert late.cancel()  # its caller gave up (a deadline) while it queued
    gate.set()
    assert first.result(60) == "k:0"
    lane.submit("k", 2).result(60)
    assert [p for _, p in run.batches] == [[0], [2]]
    lane.close()


def test_a_failing_batch_fails_each_of_its_items():
    def boom(key, payloads):
        raise RuntimeError("model exploded")
    lane = Lane("m", boom, LaneConfig(max_batch=4, window_s=0.05))
    futs = [lane.submit("k", i) for i in range(2)]
    for f in futs:
        with pytest.raises(RuntimeError, match="exploded"):
            f.result(60)
    lane.close()


def test_several_workers_keep_several_calls_in_flight():
    active, peak, lock = [0], [0], threading.Lock()
    three = threading.Barrier(3, timeout=60)  # the first three calls meet: all three workers at once

    def run(key, payloads):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if payloads[0] < 3:
            three.wait()
        with lock:
            active[0] -= 1
        return payloads

    lane = Lane("up", run, LaneConfig(max_batch=1, window_s=0.0, workers=3))
    futs = [lane.submit("k", i) for i in range(6)]
    assert [f.result(60) for f in futs] == list(range(6))
    assert peak[0] == 3  # bounded concurrency: never more than the workers
    lane.close()


def test_a_lone_request_does_not_wait_for_company_that_cannot_come():
    run = Recorder()
    lane = Lane("m", run, LaneConfig(max_batch=16, window_s=30.0), crowd=lambda: 1)  # one request in flight
    assert lane.submit("k", 0).result(timeout=10) == "k:0"  # long before the 30 s window
    lane.close()
