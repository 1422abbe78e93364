"""Load test of `tourney serve`: concurrent clients over the miniature test set.

1. Load: `tourney serve` with the router file's models in-process; CLIENTS concurrent clients
   send REQUESTS requests (the test set's questions, cycled, each request with a unique id) to
   `router`, then the same load to `student` and to `teacher` (the models directly, with the
   same batching). Checked: every request answered exactly once (ids back, request-log rows),
   every answer decided within its deadline plus MARGIN and received within deadline + MARGIN.
   Reported: throughput and p50/p95 client latency per mode, escalation share, batch sizes.
2. Overhead: the same server with recorded outputs (replay:) instead of models, so a model call
   costs next to nothing: one client, one request at a time; the p50 latency is what the server
   itself adds per request (HTTP parsing, validation, routing, lanes, reply, request log), plus
   the loopback round trip and the client.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_load.py --router router.json \
        [--requests 2000 --clients 32 --deadline-ms 20000]

The question file defaults to the package's miniature test set (tourney/harness/data/mini).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tourney.harness.metrics import percentile
from tourney.harness.questions import load_questions
from tourney.harness.types import Question

MINI_TEST = Path(__file__).resolve().parents[1] / "tourney" / "harness" / "data" / "mini" / "test.jsonl"
MARGIN_S = 0.5  # stated margin over the deadline: the reply is composed, logged and sent after the decision


def server_ms(r: httpx.Response) -> float:
    """The `server` part of the Server-Timing header: time outside model calls, in ms."""
    for part in r.headers.get("server-timing", "").split(","):
        name, _, dur = part.strip().partition(";dur=")
        if name == "server":
            return float(dur)
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc): unlike wall time, this does not
    grow when other processes compete for the cores."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(router: str, log_dir: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tourney", "serve", "--router", router, "--port", str(port),
                             "--log-dir", str(log_dir), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 600
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"tourney serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit("tourney serve did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(60)


def request_body(mode: str, q: Question, rid: str | None = None) -> dict:
    """The /v1/completions body for one question. Its options and gold travel in the `tourney`
    object: without `choices` the server would answer a multiple-choice question as free text (no
    option scores for the router, a letter gold that free text is scored against)."""
    meta: dict = {"type": q.type, "answer": q.answer}
    if rid is not None:
        meta["id"] = rid
    if q.choices:
        meta["choices"] = list(q.choices)
    return {"model": mode, "prompt": q.question, "tourney": meta}


def load(url: str, mode: str, questions, n: int, clients: int) -> dict:
    """n requests from `clients` threads; returns the figures and checks of one mode."""
    jobs = [(f"{questions[i % len(questions)].id}#{i}", questions[i % len(questions)]) for i in range(n)]
    local = threading.local()
    results: list[tuple[str, int, dict | None, float, float]] = []
    lock = threading.Lock()

    def one(job) -> None:
        rid, q = job
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=120)
        t = time.perf_counter()
        r = client.post(url + "/v1/completions", json=request_body(mode, q, rid))
        wall = time.perf_counter() - t
        body = r.json()
        with lock:
            results.append((rid, r.status_code, body.get("tourney") if r.status_code == 200 else body, wall,
                            server_ms(r)))

    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, jobs))
    elapsed = time.perf_counter() - t0
    load1 = os.getloadavg()[0]
    ok = [r for r in results if r[1] == 200]
    ids = Counter(r[2]["id"] for r in ok)
    sent = {rid for rid, _ in jobs}
    walls = [r[3] for r in results]
    decided = [r[2]["total_latency_ms"] / 1000 for r in ok]
    deadline = max((r[2]["deadline_ms"] / 1000 for r in ok), default=0.0)
    return {
        "mode": mode, "requests": n, "clients": clients, "answered": len(ok),
        "errors": Counter(r[1] for r in results if r[1] != 200),
        "lost": len(sent - set(ids)), "duplicated": sum(c - 1 for c in ids.values() if c > 1),
        "foreign": len(set(ids) - sent),
        "late": sum(1 for w in walls if w > deadline + MARGIN_S), "deadline_s": deadline,
        "decided_max_s": max(decided, default=0.0), "wall_max_s": max(walls, default=0.0),
        "throughput_rps": n / elapsed, "p50_s": percentile(walls, 50), "p95_s": percentile(walls, 95),
        "escalated": sum(1 for r in ok if r[2]["escalated"]), "fallbacks": sum(1 for r in ok if r[2]["fallback"]),
        "correct_share": None, "elapsed_s": elapsed,
        "outside_models_p50_ms": percentile([r[4] for r in ok], 50), "load_average": [load0, load1],
    }


def log_rows(log_dir: Path, mode: str) -> list[dict]:
    path = log_dir / mode / "results.jsonl"
    end = time.monotonic() + 10
    rows: list[dict] = []
    while time.monotonic() < end:  # the log thread flushes within a moment of the last reply
        rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if rows:
            time.sleep(1.5)
            rows = [json.loads(x) for x in path.read_text().splitlines()]
            break
        time.sleep(0.2)
    return rows


def batch_totals(metrics_text: str) -> dict[str, tuple[float, float]]:
    """Per model, (questions batched, batches) so far, from the server's /metrics text: counted
    since the server started, over every phase before this one too."""
    out = {}
    for model in ("student", "teacher"):
        s = c = 0.0
        for line in metrics_text.splitlines():
            if line.startswith(f'tourney_batch_size_sum{{model="{model}"}}'):
                s = float(line.split()[-1])
            if line.startswith(f'tourney_batch_size_count{{model="{model}"}}'):
                c = float(line.split()[-1])
        out[model] = (s, c)
    return out


def mean_batches(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean batch per model over one phase: the totals' growth between its start and its end."""
    out = {}
    for model, (s, c) in after.items():
        s0, c0 = before.get(model, (0.0, 0.0))
        out[model] = (s - s0) / (c - c0) if c > c0 else 0.0
    return out


def overhead(router: str, questions, work: Path, n: int, escalate: bool = False) -> dict:
    """Per-request time with models that cost nothing: recorded outputs (replay:). The student's
    recorded tokens are certain (logprob 0), so a token-signal router keeps its answer and one model
    is called; with `escalate` they are unlikely (logprob -20) and the teacher is called as well. A
    router reading option scores escalates either way (a replay model scores no options)."""
    work.mkdir(parents=True, exist_ok=True)
    student_lp = [-20.0, -20.0] if escalate else [0.0, 0.0]
    recs = {}
    for role in ("student", "teacher"):
        path = work / f"{role}-replay.jsonl"
        # any recorded answer will do: the model's cost is what this phase leaves out
        path.write_text("".join(json.dumps({"question": q.question, "output": f" {q.answer}\n#### {q.answer}",
                                            "token_logprobs": student_lp if role == "student" else None,
                                            "latency_s": 0.0}) + "\n" for q in questions))
        recs[role] = f"replay:{path}"
    proc, url = start(router, work / "log-replay", ["--student", recs["student"], "--teacher", recs["teacher"]])
    try:
        client = httpx.Client(timeout=30)
        for q in questions[:50]:  # warm up
            client.post(url + "/v1/completions", json={"model": "router", "prompt": q.question})
        walls, server, own, escalated = [], [], [], 0
        cpu0, load0 = cpu_s(proc.pid), os.getloadavg()[0]
        for i in range(n):
            q = questions[i % len(questions)]
            t = time.perf_counter()
            r = client.post(url + "/v1/completions", json={"model": "router", "prompt": q.question})
            walls.append(time.perf_counter() - t)
            server.append(r.json()["tourney"]["total_latency_ms"] / 1000)
            own.append(server_ms(r))
            escalated += r.json()["tourney"]["escalated"]
        cpu_per_request = (cpu_s(proc.pid) - cpu0) / n
        load1 = os.getloadavg()[0]
        # the client alone: a bare HTTP round trip to the same server
        bare = []
        for _ in range(n):
            t = time.perf_counter()
            client.get(url + "/v1/models")
            bare.append(time.perf_counter() - t)
    finally:
        stop(proc)
    return {"n": n, "client_p50_ms": percentile(walls, 50) * 1000, "client_p95_ms": percentile(walls, 95) * 1000,
            "decision_p50_ms": percentile(server, 50) * 1000, "models_get_p50_ms": percentile(bare, 50) * 1000,
            "server_p50_ms": percentile(own, 50), "server_p95_ms": percentile(own, 95),
            "server_cpu_ms_per_request": cpu_per_request * 1000, "load_average": [load0, load1],
            "escalated_share": escalated / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--router", required=True)
    ap.add_argument("--questions", default=str(MINI_TEST))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--deadline-ms", type=float, default=20000)
    ap.add_argument("--modes", nargs="*", default=["router", "student", "teacher"], help="load phases (none: overhead only)")
    ap.add_argument("--overhead-requests", type=int, default=500)
    ap.add_argument("--overhead-repeats", type=int, default=5,
                    help="overhead runs (fresh server each): on a shared machine one run's p50 swings with the load")
    ap.add_argument("--overhead-escalate", action="store_true",
                    help="overhead runs with an unsure student, so every request calls both models")
    args = ap.parse_args()
    questions = load_questions(args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures = []
        proc, url = start(args.router, work / "log", ["--deadline-ms", str(args.deadline_ms)]) if args.modes else (None, "")
        try:
            totals = batch_totals(httpx.get(url + "/metrics").text) if args.modes else {}
            for mode in args.modes:
                f = load(url, mode, questions, args.requests, args.clients)
                rows = log_rows(work / "log", mode)
                ids = Counter(r["tourney"]["id"] for r in rows)
                f["log_rows"], f["log_duplicates"] = len(rows), sum(c - 1 for c in ids.values() if c > 1)
                f["correct_share"] = sum(r["correct"] for r in rows) / len(rows) if rows else None
                now = batch_totals(httpx.get(url + "/metrics").text)
                f["mean_batch"], totals = mean_batches(totals, now), now
                figures.append(f)
                print(json.dumps(f, default=str), flush=True)
        finally:
            if proc is not None:
                stop(proc)
        runs = []
        for k in range(args.overhead_repeats):
            runs.append(overhead(args.router, questions, work / f"oh{k}", args.overhead_requests,
                                 args.overhead_escalate))
            print(json.dumps({"overhead": runs[-1]}), flush=True)
    print()
    print(f"| mode | answered | lost / duplicated | late (> deadline + {MARGIN_S} s) | throughput | p50 | p95 "
          "| max decided | escalated | accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for f in figures:
        print(f"| {f['mode']} | {f['answered']}/{f['requests']} | {f['lost']} / {f['duplicated']} | {f['late']} "
              f"| {f['throughput_rps']:.1f} req/s | {f['p50_s']:.3f} s | {f['p95_s']:.3f} s | {f['decided_max_s']:.3f} s "
              f"| {f['escalated'] / max(f['answered'], 1):.1%} | {f['correct_share']:.3f} |")
    if not runs:
        return
    print("\nserver overhead with recorded (replay) models, one client, one request at a time; each row a fresh server")
    print("| run | server's own time p50 (Server-Timing `server`) | p95 | server CPU per request | client round trip p50 "
          "| bare GET /v1/models p50 | load average | escalated (both models called) |")
    print("|---|---|---|---|---|---|---|---|")
    for k, oh in enumerate(runs, 1):
        print(f"| {k} | {oh['server_p50_ms']:.2f} ms | {oh['server_p95_ms']:.2f} ms | {oh['server_cpu_ms_per_request']:.2f} ms "
              f"| {oh['client_p50_ms']:.2f} ms | {oh['models_get_p50_ms']:.2f} ms | {oh['load_average'][0]:.1f} "
              f"| {oh['escalated_share']:.0%} |")
    mid = sorted(r["server_p50_ms"] for r in runs)[len(runs) // 2]
    cpu = sorted(r["server_cpu_ms_per_request"] for r in runs)[len(runs) // 2]
    print(f"median over runs: server's own time p50 {mid:.2f} ms; server CPU {cpu:.2f} ms per request")
    for f in figures:
        print(f"under load, {f['mode']}: time outside model calls (queueing included) p50 {f['outside_models_p50_ms']:.1f} ms")


if __name__ == "__main__":
    main()
