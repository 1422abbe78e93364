"""harness.pipeline and the run loop's flow with a server-like backend (a fake with worker
threads): answers recorded in the caller's thread, in completion order; per-question resumption;
never more unrecorded answers than requests in flight; failures raised after what arrived."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tourney.harness.pipeline import Prompting, answer_all, scored_rows
from tourney.harness.runner import EvalConfig, pending_questions, run_eval
from tourney.harness.types import Question
from tourney.models.types import Backend, BackendError, Capabilities, GenConfig, Generation, settle

from tests.harness.test_runner import read_rows, write_questions


@dataclass
class ThreadedServer(Backend):
    """A server's contract with worker threads: `concurrency` requests at once, each answering the
    first number of its prompt after `delay_s` (longer for prompts holding "slow")."""

    concurrency: int = 3
    delay_s: float = 0.01
    fail_after: int | None = None  # raise BackendError once this many prompts were answered
    spec: str = "fake:server"
    asked: list[str] = field(default_factory=list)
    started: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(server=True, concurrency=self.concurrency)

    def generate(self, prompts, cfg):
        out = [None] * len(prompts)
        self.generate_each(prompts, cfg, lambda i, g: out.__setitem__(i, g))
        return out

    def _answer(self, prompt: str, cfg: GenConfig) -> list[Generation]:
        with self._lock:
            self.started += 1
            self.asked.append(prompt)
        time.sleep(self.delay_s * (20 if "slow" in prompt else 1))
        n = next((w for w in prompt.replace("?", " ").split() if w.isdigit()), "0")
        return [Generation(text=f"#### {n}", finish_reason="stop", latency_s=self.delay_s) for _ in range(cfg.n)]

    def generate_each(self, prompts, cfg, on_done):
        answered = 0
        stop = threading.Event()  # the contract: an exception from on_done sends nothing more

        def job(i: int) -> None:
            nonlocal answered
            if stop.is_set():
                return
            gens = self._answer(prompts[i], cfg)
            with self._lock:
                answered += 1
                if self.fail_after is not None and answered > self.fail_after:
                    raise BackendError("server went away")
            try:
                settle(on_done(i, gens))  # the slot stays taken until the answer is recorded
            except BaseException:
                stop.set()
                raise

        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = [pool.submit(job, i) for i in range(len(prompts))]
            for f in futures:
                f.result()

    def close(self) -> None:
        pass


def questions(n: int, slow: set[int] = frozenset()) -> list[Question]:
    return [Question(id=f"q{i}", question=f"{'slow ' if i in slow else ''}Ann has {i + 1} cats?", answer=str(i + 1))
            for i in range(n)]


def test_answers_are_recorded_in_the_callers_thread_in_completion_order():
    qs = questions(6, slow={0})
    prompts, stop = Prompting().render(qs)
    seen: list[tuple[str, str]] = []

    def record(answers):
        seen.extend((a.question.id, threading.current_thread().name) for a in answers)

    answer_all(ThreadedServer(concurrency=2), qs, prompts, GenConfig(stop=stop), record)
    assert sorted(i for i, _ in seen) == [q.id for q in qs]
    assert seen[-1][0] == "q0"  # the slow one, asked first, arrives last
    assert {name for _, name in seen} == {threading.main_thread().name}


def test_never_more_unrecorded_answers_than_requests_in_flight():
    """A worker waits until its answer is recorded before it sends another request: while the
    caller is busy recording, no new request starts, so a kill loses at most C questions."""
    backend = ThreadedServer(concurrency=3, delay_s=0.005)
    qs = questions(30)
    prompts, stop = Prompting().render(qs)
    recorded = 0
    worst = 0

    def record(answers):
        nonlocal recorded, worst
        time.sleep(0.02)  # a slow disk
        recorded += len(answers)
        worst = max(worst, backend.started - recorded)

    answer_all(backend, qs, prompts, GenConfig(stop=stop), record)
    assert recorded == 30 and worst <= 3


def test_a_backend_failure_is_raised_after_what_arrived_was_recorded():
    qs = questions(10)
    prompts, stop = Prompting().render(qs)
    got: list[str] = []
    with pytest.raises(BackendError, match="went away"):
        answer_all(ThreadedServer(concurrency=1, fail_after=4), qs, prompts, GenConfig(stop=stop),
                   lambda answers: got.extend(a.question.id for a in answers))
    # Sent longest question first ("10 cats" is one character longer), then in question order.
    assert got == ["q9", "q0", "q1", "q2"]


def test_server_requests_go_longest_question_first_and_rows_come_back_in_question_order(tmp_path):
    pets = [" and a dog", " and a dog", " and a dog", " and a dog", " and a cow"]  # q2, q4: a tie
    qs = [Question(id=f"q{i}", question="Ann has 1 cat" + pets[i] * n + "?", answer="1")
          for i, n in enumerate([0, 5, 2, 9, 2])]
    prompts, stop = Prompting().render(qs)
    backend = ThreadedServer(concurrency=1)
    got: list[int] = []
    answer_all(backend, qs, prompts, GenConfig(stop=stop), lambda answers: got.extend(a.index for a in answers))
    assert [prompts.index(p) for p in backend.asked] == [3, 1, 2, 4, 0]  # ties keep question order
    assert got == [3, 1, 2, 4, 0]  # each answer keeps its question's index


def test_a_failure_while_recording_stops_the_workers():
    backend = ThreadedServer(concurrency=2, delay_s=0.01)
    qs = questions(40)
    prompts, stop = Prompting().render(qs)

    def record(answers):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        answer_all(backend, qs, prompts, GenConfig(stop=stop), record)
    time.sleep(0.5)  # room for a worker that did not stop to send the rest (0.2 s of requests)
    assert backend.started < 40


def test_server_runs_resume_per_question(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=10)
    out = tmp_path / "run"
    cfg = EvalConfig(model="fake", data=str(data), out=str(out))
    full = run_eval(cfg, ThreadedServer())
    complete = (out / "results.jsonl").read_text()
    # a kill: three questions written (in completion order, here shuffled) and a torn fourth line
    lines = complete.splitlines(keepends=True)
    (out / "results.jsonl").write_text(lines[7] + lines[2] + lines[5] + lines[0][:15])
    backend = ThreadedServer()
    resumed = run_eval(cfg, backend)
    asked = sorted(int(p.split("has ")[1].split()[0]) - 1 for p in backend.asked)
    assert asked == [0, 1, 3, 4, 6, 8, 9]  # only the questions without a row: no batch is widened
    assert (out / "results.jsonl").read_text() == complete  # question order, as uninterrupted
    assert resumed["overall"] == full["overall"]


def test_progress_reports_done_total_and_requests_in_flight(tmp_path):
    data = tmp_path / "q.jsonl"
    write_questions(data, n=5)
    calls: list[tuple] = []
    run_eval(EvalConfig(model="fake", data=str(data), out=str(tmp_path / "run")), ThreadedServer(),
             progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 5, 0) and calls[-1][:2] == (5, 5)
    assert all(total == 5 and inflight is not None for _, total, inflight in calls)


@pytest.mark.parametrize("unit, finished, expected", [
    (None, {"q1", "q4"}, ["q0", "q2", "q3", "q5", "q6"]),  # a server: the missing ones only
    (3, {"q1", "q4"}, ["q0", "q1", "q2", "q3", "q4", "q5", "q6"]),  # batches of 3 that hold one, whole
    (3, {"q0", "q1", "q2", "q6"}, ["q3", "q4", "q5"]),
    (1, {"q0"}, ["q1", "q2", "q3", "q4", "q5", "q6"]),
])
def test_pending_questions(unit, finished, expected):
    qs = questions(7)
    caps = Capabilities(server=unit is None, batch_size=unit)
    todo = pending_questions(qs, {(i, 0) for i in finished}, 1, caps)
    assert [q.id for q in todo] == expected


def test_scored_rows_extracts_once_and_scores_only_with_a_gold_answer():
    gold = Question(id="a", question="?", answer="4")
    none = Question(id="b", question="?", answer="")
    g = [Generation(text="so #### 4"), Generation(text="", error="HTTP 500")]
    rows = scored_rows(gold, g)
    assert [(r.prediction, r.correct, r.error) for r in rows] == [("4", True, None), (None, False, "HTTP 500")]
    assert [(r.prediction, r.correct) for r in scored_rows(none, g[:1])] == [("4", False)]


def test_results_rows_are_written_once_per_question_as_they_arrive(tmp_path):
    """Each group of answers is one append: the file grows while the run is going."""
    data = tmp_path / "q.jsonl"
    write_questions(data, n=6)
    out = tmp_path / "run"
    sizes: list[int] = []

    def progress(done, total, in_flight):
        path = out / "results.jsonl"
        sizes.append(len(path.read_text().splitlines()) if path.exists() else 0)

    run_eval(EvalConfig(model="fake", data=str(data), out=str(out)), ThreadedServer(concurrency=1, delay_s=0.02),
             progress=progress)
    assert sizes[0] == 0 and max(sizes) == 6 and len(set(sizes)) > 2
    assert [json.loads(x)["id"] for x in (out / "results.jsonl").read_text().splitlines()] == [f"q{i}" for i in range(6)]
    assert read_rows(out / "results.jsonl")[0]["correct"] is False  # q0's gold is 99 (test_runner's data)


def test_in_process_batches_are_recorded_whole_and_kept_before_a_failure():
    from tests.fakes import EchoMathBackend

    class Flaky(EchoMathBackend):
        def generate(self, prompts, cfg):
            if len(self.calls) == 2:
                raise BackendError("out of memory")
            return super().generate(prompts, cfg)

    qs = questions(7)
    prompts, stop = Prompting().render(qs)
    groups: list[list[str]] = []
    with pytest.raises(BackendError, match="out of memory"):
        answer_all(Flaky(batch_size=3), qs, prompts, GenConfig(stop=stop),
                   lambda answers: groups.append([a.question.id for a in answers]))
    assert groups == [["q0", "q1", "q2"], ["q3", "q4", "q5"]]  # one record (one write) per batch


def test_the_order_sent_reads_the_question_not_the_options():
    """A multiple-choice prompt is long for its options, not for its answer: a long worked problem
    goes before a short question with long options, whatever the rendered prompts' lengths."""
    problem = Question(id="p", question="Sam has 10 marbles. Sam loses 2. Sam doubles them. How many now?", answer="16")
    mc = Question(id="m", question="Where does Ann live?", answer="B",
                  choices=("a town far away in the hills " * 3, "the city by the sea " * 3, "x", "y"))
    prompts, stop = Prompting().render([mc, problem])
    assert len(prompts[0]) > len(prompts[1])  # the multiple-choice prompt is the longer one
    backend = ThreadedServer(concurrency=1)
    answer_all(backend, [mc, problem], prompts, GenConfig(stop=stop), lambda answers: None)
    assert [prompts.index(p) for p in backend.asked] == [1, 0]


@dataclass
class CancellingServer(Backend):
    """A server whose waiting slots are cancelled under the run loop: the shape of the race in
    issue 27, made to happen every time. `generate_each` hands over two answers at once; the
    recorder then cancels their futures (as a backend cancelling its waiting workers would) just
    before the write fails, so the run loop's stop path meets futures that are settled already."""

    spec: str = "fake:cancelling"
    capabilities: Capabilities = field(default_factory=lambda: Capabilities(server=True, concurrency=2))

    def generate(self, prompts, cfg):  # pragma: no cover -- answer_all uses generate_each
        raise AssertionError

    def generate_each(self, prompts, cfg, on_done):
        futures = [on_done(i, [Generation(text="#### 1")]) for i in range(len(prompts))]
        for f in futures:
            try:
                settle(f)
            except BaseException:  # noqa: BLE001 -- stopped or cancelled: this slot is done
                pass


def test_a_stop_meeting_futures_settled_by_the_other_side_raises_the_real_error():
    """Every future handed out is settled once, whoever gets there first (cancellation counts):
    the caller sees the recording error, never InvalidStateError (issue 27)."""
    qs = [Question(id=f"q{i}", question=f"What is {i}?", answer="1") for i in range(2)]
    prompts, stop = Prompting().render(qs)

    def record(answers: list) -> None:
        for a in answers:
            a._recorded.cancel()  # the backend's side settles first
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        answer_all(CancellingServer(), qs, prompts, GenConfig(stop=stop), record)


def test_settle_once_keeps_the_first_outcome():
    from concurrent.futures import Future

    from tourney.models.types import settle_once

    f: Future = Future()
    assert settle_once(f, OSError("first"))
    assert not settle_once(f)  # second side: no error, outcome unchanged
    with pytest.raises(OSError, match="first"):
        f.result()
    g: Future = Future()
    g.cancel()
    assert not settle_once(g, OSError("late"))
    assert g.cancelled()
