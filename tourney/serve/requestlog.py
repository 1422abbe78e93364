"""Every answered request as result rows, in run directories the rest of tourney reads.

Layout under --log-dir:

    LOG/<mode>/run.json, results.jsonl   one row per question answered in that mode (router,
                                         router-speed, router-accuracy, student, teacher): the
                                         answer that stood, total latency, and a `tourney` object
                                         (the response's decision, request id, endpoint, time)
    LOG/pairs/student/, LOG/pairs/teacher/
                                         questions both models answered, the student with the
                                         router's own samples and logprobs (escalated router
                                         questions, and the --shadow-share of confident ones)

Rows are results.jsonl rows (harness.types.SampleResult; readers ignore the extra `tourney`
field), so `tourney report LOG/router`, `tourney regress EVAL_RUN LOG/router` (paired by
question id: send ids in the `tourney` extension) and `tourney route eval --student
LOG/pairs/student --teacher LOG/pairs/teacher` read a day of traffic. A question sent twice
with the same id has two lines in the file; readers keep the last. Without a gold answer in the
request a row's `correct` is false. With log_questions off the question text is left empty.

Writes happen on a thread of their own, off the request path. It wakes every FLUSH_EVERY_S rather
than for each row (waking a thread per request costs the request path a GIL handoff), writes and
flushes what has gathered, fsyncs about once a second, and everything when the server stops.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from tourney.harness.scoring import score
from tourney.models.types import Generation
from tourney.serve.adapter import ModelSettings, Served, decision, student_rows, teacher_rows
from tourney.serve.config import SERVE_MODES

RESULTS, RUN = "results.jsonl", "run.json"
FLUSH_EVERY_S = 0.1
FSYNC_EVERY_S = 1.0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tourney")
    except PackageNotFoundError:
        return "unknown"


def _run_meta(model: str, settings: ModelSettings, source: str) -> dict[str, Any]:
    return {"model": model, "data": source, "data_sha256": "n/a",
            "generation": {"max_tokens": settings.max_tokens, "temperature": settings.temperature,
                           "top_p": settings.top_p, "samples": settings.samples, "seed": settings.seed,
                           "logprobs": settings.logprobs},
            "template": settings.template or ("auto-chat" if settings.chat else "auto"),
            "package_version": _version(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "n_questions": None,
            "identity": {"model": model, "template": settings.template, "chat": settings.chat,
                         "samples": settings.samples, "logprobs": settings.logprobs}}


class RequestLog:
    def __init__(self, log_dir: str | Path, student: ModelSettings, teacher: ModelSettings, *,
                 log_questions: bool = True, source: str = "tourney serve") -> None:
        self.dir = Path(log_dir)
        self.log_questions = log_questions
        self._meta = {mode: _run_meta(f"serve:{mode}", student if mode in ("router", "router-speed", "student")
                                      else teacher, source) for mode in SERVE_MODES}
        self._meta["pairs/student"] = _run_meta(student.spec, student, source)
        self._meta["pairs/teacher"] = _run_meta(teacher.spec, teacher, source)
        self._files: dict[str, TextIO] = {}
        self._pending: list[tuple[str, list[dict[str, Any]]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="tourney-request-log", daemon=True)
        self._closed = False
        self.written = 0
        self._thread.start()

    # -- rows -------------------------------------------------------------------------------
    def _text(self, s: str) -> str:
        return s if self.log_questions else ""

    def served_row(self, s: Served, endpoint: str, request_id: str) -> dict[str, Any]:
        q, r = s.question, s.record
        prompt_tokens, completion_tokens, finish = s.standing()
        correct = bool(q.answer) and r.prediction is not None and score(q, r.output).correct
        return {"id": q.id, "question": self._text(q.question), "type": q.type, "sample": 0, "output": r.output,
                "prediction": r.prediction, "gold": q.answer, "correct": correct,
                "latency_s": round(r.total_latency_s, 6), "ttft_s": None, "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens, "error": r.error if s.status == 200 else (r.error or f"HTTP {s.status}"),
                "finish_reason": finish, "token_logprobs": None,
                "tourney": {**decision(s).model_dump(), "request_id": request_id, "endpoint": endpoint,
                            "status": s.status, "received_at": round(s.wall_received, 3)}}

    def _model_rows(self, rows: list) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            d = row.to_dict()
            d["question"] = self._text(d["question"])
            out.append(d)
        return out

    def write(self, s: Served, endpoint: str, request_id: str) -> None:
        """Log one answered question (and its pair, when both models answered)."""
        self._put(s.mode, [self.served_row(s, endpoint, request_id)])
        if s.student_full and s.teacher is not None and s.teacher.error is None and s.student is not None:
            self.write_pair(s, s.teacher)

    def write_pair(self, s: Served, teacher: Generation) -> None:
        self._put("pairs/student", self._model_rows(student_rows(s.question, s.student)))
        self._put("pairs/teacher", self._model_rows(teacher_rows(s.question, teacher)))

    # -- the writer thread ------------------------------------------------------------------
    def _put(self, name: str, rows: list[dict[str, Any]]) -> None:
        if rows and not self._closed:
            with self._lock:
                self._pending.append((name, rows))

    def _file(self, name: str) -> TextIO:
        f = self._files.get(name)
        if f is None:
            folder = self.dir / name
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / RUN).exists():
                (folder / RUN).write_text(json.dumps(self._meta[name], indent=2, sort_keys=True) + "\n", encoding="utf-8")
            f = self._files[name] = (folder / RESULTS).open("a", encoding="utf-8")
        return f

    def _write_loop(self) -> None:
        last_sync = time.monotonic()
        while True:
            stop = self._stop.wait(FLUSH_EVERY_S)
            with self._lock:
                batch, self._pending = self._pending, []
            for name, rows in batch:
                f = self._file(name)
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
                self.written += len(rows)
            if batch:
                for f in self._files.values():
                    f.flush()
            if stop or time.monotonic() - last_sync >= FSYNC_EVERY_S:
                for f in self._files.values():
                    os.fsync(f.fileno())
                last_sync = time.monotonic()
            if stop:
                return

    def close(self) -> None:
        """Write what is queued, fsync, close the files."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(30)
        for f in self._files.values():
            f.close()
        self._files.clear()
