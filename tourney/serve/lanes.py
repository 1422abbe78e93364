"""Per-model work queues ("lanes"): dynamic batches for in-process models, bounded concurrency for
upstream servers.

A lane holds one model's pending work and its own worker threads, so a slow teacher never holds
up a student-only request: the two never share a queue or a thread. Work items carry a key
(e.g. whether the student should draw the router's samples, the token budget) and a batch only
mixes items of one key, because one backend call takes one set of generation settings.

In-process models (transformers, llama.cpp, vLLM's offline engine) answer a batch in about the
time of its longest answer, so one worker gathers what arrives: the first item of a batch waits
at most `window_s` for company, or less once `max_batch` items are there; while the worker runs a
batch, newcomers queue and go together into the next one. Upstream servers batch continuously on
their side, so their lane has `workers` = the concurrency bound and batches of one: requests go
out as they come, at most `workers` in flight.

The window is only waited for company that can come: with `crowd` (how many requests the server
is answering now) a batch leaves as soon as it holds every one of them, so a lone request at low
load pays no window at all.

A caller that stops waiting (its deadline passed) cancels its future; an item cancelled before a
worker takes it is dropped, one already running completes in the background and is discarded.
Each future carries `run_s`, the time its batch spent in the model call.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

# run(key, payloads) -> one result per payload, in order
BatchFn = Callable[[Hashable, Sequence[Any]], Sequence[Any]]


@dataclass(frozen=True)
class LaneConfig:
    max_batch: int = 16  # items per call at most
    window_s: float = 0.005  # the most the first item of a batch waits for more
    workers: int = 1  # threads calling the model at once

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.workers < 1 or self.window_s < 0:
            raise ValueError(f"bad lane settings: {self}")


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: Future
    enqueued: float = field(default_factory=time.monotonic)


class Lane:
    """One model's queue and workers. `submit` is thread-safe and never blocks."""

    def __init__(self, name: str, run: BatchFn, cfg: LaneConfig,
                 on_batch: Callable[[str, int, float], None] | None = None,
                 on_depth: Callable[[str, int], None] | None = None,
                 crowd: Callable[[], int] | None = None) -> None:
        self.name, self._run, self.cfg, self._crowd = name, run, cfg, crowd
        self._on_batch, self._on_depth = on_batch, on_depth
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._busy = 0
        self._threads = [threading.Thread(target=self._work, name=f"tourney-{name}-{i}", daemon=True)
                         for i in range(cfg.workers)]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Items waiting (not yet taken by a worker)."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Workers running a batch now."""
        return self._busy

    def submit(self, key: Hashable, payload: Any) -> Future:
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"lane {self.name} is closed")
            self._queue.append(_Item(key, payload, fut))
            self._depth_changed()
            self._cond.notify()
        return fut

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking work; workers finish what they hold and leave. Queued items are cancelled."""
        with self._cond:
            self._closed = True
            for item in self._queue:
                item.future.cancel()
            self._queue.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout_s)

    # -- workers ------------------------------------------------------------------------------
    def _depth_changed(self) -> None:
        if self._on_depth:
            self._on_depth(self.name, len(self._queue))

    def _count(self, key: Hashable) -> int:
        return sum(1 for it in self._queue if it.key == key)

    def _room(self) -> int:
        """The batch size worth waiting for: max_batch, or fewer when fewer requests are in flight."""
        if self._crowd is None:
            return self.cfg.max_batch
        return max(1, min(self.cfg.max_batch, self._crowd()))

    def _take(self) -> list[_Item] | None:
        """The next batch, or None once the lane is closed. Called with the lock held."""
        while True:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._queue[0]
            until = first.enqueued + self.cfg.window_s
            while self.cfg.max_batch > 1 and not self._closed and self._count(first.key) < self._room():
                left = until - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._closed:
                return None
            batch, keep = [], deque()
            for it in self._queue:
                if it.key == first.key and len(batch) < self.cfg.max_batch:
                    batch.append(it)
                else:
                    keep.append(it)
            self._queue = keep
            self._depth_changed()
            live = [it for it in batch if it.future.set_running_or_notify_cancel()]
            if live:
                return live

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
                if batch is None:
                    return
                self._busy += 1
            start = time.monotonic()
            try:
                results = list(self._run(batch[0].key, [it.payload for it in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"lane {self.name}: {len(results)} results for {len(batch)} items")
            except BaseException as e:  # noqa: BLE001 -- handed to every waiter, never lost
                for it in batch:
                    it.future.set_exception(e)
            else:
                run_s = time.monotonic() - start
                for it, res in zip(batch, results):
                    it.future.run_s = run_s  # type: ignore[attr-defined]
                    it.future.set_result(res)
            finally:
                with self._cond:
                    self._busy -= 1
                if self._on_batch:
                    self._on_batch(self.name, len(batch), time.monotonic() - start)
