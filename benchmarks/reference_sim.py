"""A simulated reference pair (Qwen3-30B-A3B student, Qwen3-235B-A22B teacher, vLLM on H100s),
and `tourney route plan` checked against what `tourney submit` and `tourney serve` measure on it.

The pair: two stub continuously batching servers (benchmarks/stub_server.py) on 127.0.0.1 whose
answers are real recorded outputs, replayed by question (../shared/data/gsm8k-recorded: student =
GPT-3 6B verifier-selected, teacher = GPT-3 175B verifier-selected; or with --data mmlupro one
question in ten of ../shared/data/mmlupro-recorded, Qwen1.5-7B-Chat and Qwen1.5-72B-Chat), so
every accuracy is real. Per
request: time to first token, then one further token every inter-token latency; a whitespace
piece of the recorded output counts as TOKENS_PER_PIECE tokens. Load: with n requests running, the
inter-token latency is multiplied by 1 + slope * max(0, n - knee) (stub_server.Decoder). The
figures are REFERENCE below (RESULTS.md says where they come from). Time runs FACTOR times faster
than on the reference hardware (--factor, default 0.5: every latency, deadline and budget x 0.5), so the
sweep runs in minutes on a 2-core machine; figures are reported in simulated seconds.

The questions are split by a hash of their text: dev (the runs the planner and the router are made
from: `tourney eval` at concurrency 8, below both knees) and test (what is submitted). Then, for
every setting (mode, deadline, concurrency): `tourney submit` on the test half, and `tourney route
plan` from the dev runs with the same deadline, concurrency and question count, side by side.
Last, `tourney serve` (the router) at several client loads against the same servers.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/reference_sim.py [--factor 0.5] \
        [--work /tmp/refsim] [--data gsm8k|mmlupro] [--quick] [--only MODE:DEADLINE_MS:C ...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
MMLUPRO = SHARED / "mmlupro-recorded"
# Per data set: the questions, each server's recorded outputs (stub_server --system), and one
# question in `every` kept (MMLU-Pro's 5,996 would take too long here).
DATASETS = {
    "gsm8k": dict(data=SHARED / "gsm8k-recorded" / "dev.jsonl", student="6b_verification",
                  teacher="175b_verification", every=1),
    "mmlupro": dict(data=MMLUPRO / "questions.jsonl", student=f"replay:{MMLUPRO / 'qwen15' / 'student.jsonl'}",
                    teacher=f"replay:{MMLUPRO / 'qwen15' / 'teacher.jsonl'}", every=10),
}
TOKENS_PER_PIECE = 1.3  # BPE tokens per whitespace piece of English text with numbers (an estimate)


@dataclass(frozen=True)
class Figures:
    """One model as served at low load, and how it slows (reference hardware, real seconds)."""

    model: str
    ttft_s: float  # time to first token (a short GSM8K prompt)
    itl_s: float  # seconds per output token at or below the knee
    knee: float  # running requests before the inter-token latency grows
    slope: float  # its growth per request above the knee (fraction of itl_s)


REFERENCE = {
    "student": Figures("Qwen3-30B-A3B, BF16, 1 x H100 (vLLM)", ttft_s=0.045, itl_s=0.006, knee=32, slope=0.010),
    "teacher": Figures("Qwen3-235B-A22B, FP8, 4 x H100 TP4 (vLLM)", ttft_s=0.20, itl_s=0.020, knee=16, slope=0.023),
}


def cli(args: list, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "tourney", *map(str, args)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode not in (0, 3):
        raise SystemExit(f"failed: tourney {' '.join(map(str, args))}\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res


def salted(text: str, salt: str) -> int:
    return int(hashlib.sha256((salt + text).encode()).hexdigest(), 16)


def split(work: Path, name: str) -> tuple[Path, Path, Path, int, int]:
    """The stub servers' data file, dev.jsonl and test.jsonl: half each, by a salted hash of the
    question text (salted: gsm8k-recorded is itself the even-sha1 half of GSM8K's test set)."""
    spec = DATASETS[name]
    rows = [json.loads(x) for x in Path(spec["data"]).read_text(encoding="utf-8").splitlines() if x.strip()]
    rows = [r for r in rows if salted(r["question"], "refsim-keep:") % spec["every"] == 0]
    if name == "gsm8k":
        served = Path(spec["data"])
        rows = [{"id": f"g{i:04d}", "question": r["question"], "answer": r["answer"]} for i, r in enumerate(rows)]
    else:
        served = work / "served.jsonl"
        served.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    halves: dict[str, list[str]] = {"dev": [], "test": []}
    for r in rows:
        halves["dev" if salted(r["question"], "refsim:") % 2 == 0 else "test"].append(json.dumps(r))
    paths = []
    for half, lines in halves.items():
        p = work / f"{half}.jsonl"
        p.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(p)
    return served, paths[0], paths[1], len(halves["dev"]), len(halves["test"])


def timing(f: Figures, factor: float) -> dict:
    return dict(base_s=f.ttft_s * factor, per_token_s=f.itl_s * TOKENS_PER_PIECE * factor, itl_knee=f.knee,
                itl_slope=f.slope, tail_every=0, chunk_tokens=32)


def load_flag(f: Figures) -> str:
    return f"{f.knee:g}:{f.slope:g}"


def stats(server, reset: bool = False) -> dict:
    base = server.base_url.removesuffix("/v1")
    return (httpx.post(base + "/stats/reset", timeout=10) if reset else httpx.get(base + "/stats", timeout=10)).json()


def eval_runs(work: Path, data: Path, name: str, specs: dict[str, str]) -> tuple[Path, Path]:
    """`tourney eval` of both servers on a question file, 8 in flight (below both knees)."""
    s, t = work / f"{name}-student", work / f"{name}-teacher"
    cli(["eval", "--model", specs["student"], "--data", data, "--concurrency", 8, "--out", s, "--overwrite"])
    cli(["eval", "--model", specs["teacher"], "--data", data, "--concurrency", 8, "--out", t, "--overwrite"])
    return s, t


def submit(work: Path, test: Path, router: Path, specs: dict, servers: dict, mode: str, deadline_ms: float, c: int,
           limit: int | None, budget_s: float | None) -> dict:
    out = work / "submit" / f"{router.stem}-{mode}-d{deadline_ms:g}-c{c}-b{budget_s or 0:g}"
    for s in servers.values():
        stats(s, reset=True)
    args = ["submit", "--questions", test, "--router", router, "--mode", mode, "--deadline-ms", deadline_ms,
            "--concurrency", c, "--student", specs["student"], "--teacher", specs["teacher"], "--out", out, "--overwrite"]
    args += ["--limit", limit] if limit else []
    args += ["--budget-s", budget_s] if budget_s else []
    cli(args)
    st = {role: stats(s) for role, s in servers.items()}
    summary = json.loads((out / "summary.json").read_text())
    grade = summary["scored"]["overall"]
    n = summary["answered"]
    return {"accuracy": grade["accuracy"], "ci95": grade["ci95"], "p50_s": summary["latency_p50_s"],
            "p95_s": summary["latency_p95_s"], "missed_share": summary["deadline_missed"] / n,
            "budget_share": summary["budget_exhausted"] / n, "teacher_share": summary["escalated_share"],
            "student_s_per_1k": st["student"]["served_s"] / n * 1000, "teacher_s_per_1k": st["teacher"]["served_s"] / n * 1000,
            "n": n, "spent_s": summary["spent_s"]}


def plan(s: Path, t: Path, router: Path, deadline_ms: float, c: int, n: int, budget_s: float | None) -> dict:
    args = ["route", "plan", "--student", s, "--teacher", t, "--router", router, "--deadline-ms", deadline_ms,
            "--concurrency", c, "--questions", n, "--student-load", load_flag(REFERENCE["student"]),
            "--teacher-load", load_flag(REFERENCE["teacher"]), "--json"]
    args += ["--budget-s", budget_s] if budget_s else []
    return json.loads(cli(args).stdout)


SERVE_LOADS = {1: 40, 8: 160, 64: 320}  # clients: requests
SERVE_LOADS_QUICK = {1: 10, 8: 40, 64: 128}
LABEL = {"speed": "speed", "accuracy": "accuracy", "balanced": "balanced router"}


def pick(p: dict, mode: str, label: str | None = None) -> dict:
    return next(o for o in p["options"] if o["label"] == (label or LABEL[mode]))


def compare(planned: dict, measured: dict) -> dict:
    lo, hi = measured["ci95"]
    return {"accuracy_in_ci": lo - 1e-9 <= planned["accuracy"] <= hi + 1e-9,
            "p95_within_15pct": abs(planned["latency_p95_s"] - measured["p95_s"]) <= 0.15 * measured["p95_s"],
            "missed_within_1pt": abs(planned["missed_share"] - measured["missed_share"]) <= 0.01 + 1e-9,
            # the plan's own interval for the share (route plan's missed_ci95; older results lack it)
            "missed_in_plan_ci": "missed_ci95" in planned
            and planned["missed_ci95"][0] - 1e-9 <= measured["missed_share"] <= planned["missed_ci95"][1] + 1e-9}


def grid_picks(work: Path, test: Path, router: Path, specs: dict, servers: dict, rows: list[dict],
               runs: dict) -> list[dict]:
    """Where the dev plan's own pick over its threshold grid is a balanced threshold the sweep did
    not submit: submit it (the router file with that threshold) and set it beside its plans."""
    out, done = [], set()
    for r in rows:
        label = r["recommended_dev"]
        key = (label, r["deadline_ms"], r["concurrency"], r["budget_s"])
        if not label or not label.startswith("balanced share") or key in done:
            continue
        done.add(key)
        pick_dev = next(o for o in r["options_dev"] if o["label"] == label)
        d = json.loads(router.read_text())
        d["threshold"] = pick_dev["threshold"]
        picked = work / f"router-{label.replace(' ', '-')}-d{r['deadline_ms']:g}-c{r['concurrency']}.json"
        picked.write_text(json.dumps(d))
        measured = submit(work, test, picked, specs, servers, "balanced", r["deadline_ms"], r["concurrency"],
                          r["n"], r["budget_s"])
        g = {"label": label, "router": str(picked), "deadline_ms": r["deadline_ms"], "concurrency": r["concurrency"],
             "n": r["n"], "budget_s": r["budget_s"], "measured": measured}
        plan_pick(g, runs)
        out.append(g)
    return out


def plan_pick(g: dict, runs: dict) -> None:
    """Both halves' plans of a grid pick: the picked router file's own threshold ("balanced
    router"; the test half's grid would put its shares at other thresholds)."""
    for h, (s_run, t_run) in runs.items():
        p = plan(s_run, t_run, Path(g["router"]), g["deadline_ms"], g["concurrency"], g["n"], g["budget_s"])
        g[f"planned_{h}"] = pick(p, "balanced")
        g[f"checks_{h}"] = compare(g[f"planned_{h}"], g["measured"])


def serve_loads(work: Path, router: Path, test: Path, specs: dict, loads: dict[int, int],
                deadline_ms: float) -> list[dict]:
    """`tourney serve` (the router's mode) at several client loads: client p50/p95 and teacher share."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from serve_load import load, start, stop

    from tourney.harness.questions import load_questions

    qs = load_questions(str(test))
    proc, url = start(str(router), work / "serve-log", ["--student", specs["student"], "--teacher", specs["teacher"],
                                                        "--deadline-ms", str(deadline_ms),
                                                        "--upstream-concurrency", str(max(loads))])
    try:
        out = []
        for c, requests in loads.items():
            load(url, "router", qs, min(8, len(qs)), min(c, 8))  # warm the connections
            r = load(url, "router", qs, requests, c)
            out.append({"clients": c, "requests": requests, "p50_s": r["p50_s"], "p95_s": r["p95_s"],
                        "teacher_share": r["escalated"] / max(r["answered"], 1), "answered": r["answered"],
                        "throughput_rps": r["throughput_rps"]})
        return out
    finally:
        stop(proc)


def settings(quick: bool, n_test: int) -> list[tuple[str, float, int, int | None, float | None]]:
    """(mode, deadline ms in simulated time, concurrency, limit, budget) -- in real-hardware terms
    the deadlines are these / FACTOR (main scales them)."""
    real_deadlines = [1500, 3000, 6000]
    out = []
    for mode in ("speed", "balanced", "accuracy"):
        for d in (real_deadlines[1:] if quick else real_deadlines):
            out.append((mode, d, 8, None, None))
        out.append((mode, 6000, 1, 60 if quick else 100, None))
        for d in ((6000,) if quick else (3000, 6000)):
            out.append((mode, d, 64, None, None))
    # a budget that runs out about half-way through accuracy mode at C 8 (budgets in real seconds)
    out += [("accuracy", 3000, 8, None, 30.0), ("balanced", 3000, 8, None, 30.0)]
    return out


def planned_row(row: dict, plans: dict, runs: dict, router: Path) -> None:
    """The plans of one measured setting, from both halves' runs, with their checks."""
    for half, (s_run, t_run) in runs.items():
        key = (half, row["deadline_ms"], row["concurrency"], row["n"], row["budget_s"])
        if key not in plans:
            plans[key] = plan(s_run, t_run, router, row["deadline_ms"], row["concurrency"], row["n"], row["budget_s"])
        row[f"planned_{half}"] = pick(plans[key], row["mode"])
        row[f"checks_{half}"] = compare(row[f"planned_{half}"], row["measured"])
        row[f"recommended_{half}"] = plans[key]["recommended"]
        row[f"options_{half}"] = plans[key]["options"]


def replan(work: Path) -> None:
    """Plan every measured setting of WORK/results.json again from the runs in WORK (the plan is
    a function of the runs alone: a planner change is checked without measuring again)."""
    res = json.loads((work / "results.json").read_text())
    runs = {half: (work / f"{half}-student", work / f"{half}-teacher") for half in ("dev", "test")}
    plans: dict = {}
    for row in res["settings"]:
        planned_row(row, plans, runs, work / "router.json")
    for g in res.get("grid_picks", []):
        g.setdefault("router", str(work / f"router-{g['label'].replace(' ', '-')}-d{g['deadline_ms']:g}-c{g['concurrency']}.json"))
        plan_pick(g, runs)
    if "serve" in res:
        res["serve_plans"] = {s["clients"]: pick(plan(*runs["test"], work / "router.json", 6000 * res["factor"],
                                                      s["clients"], s["requests"], None), "balanced")
                              for s in res["serve"]}
    (work / "results.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {work / 'results.json'}")


def main() -> None:
    from tests.stub_openai import stub_server

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--factor", type=float, default=0.5, help="simulated seconds per reference-hardware second")
    ap.add_argument("--work", type=Path, default=Path("/tmp/refsim"))
    ap.add_argument("--data", choices=sorted(DATASETS), default="gsm8k", help="whose recorded outputs the pair replays")
    ap.add_argument("--quick", action="store_true", help="fewer settings")
    ap.add_argument("--only", action="append", default=[], metavar="MODE:DEADLINE_MS:C",
                    help="run only these settings (deadline in reference time), and no serve load")
    ap.add_argument("--replan", action="store_true", help="only plan WORK/results.json's settings again")
    args = ap.parse_args()
    if args.replan:
        return replan(args.work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    served, dev, test, n_dev, n_test = split(work, args.data)
    results = {"data": args.data, "factor": args.factor, "reference": {k: vars(v) for k, v in REFERENCE.items()},
               "tokens_per_piece": TOKENS_PER_PIECE, "dev_questions": n_dev, "test_questions": n_test, "settings": []}
    with ExitStack() as stack:
        servers = {role: stack.enter_context(stub_server(served, system=DATASETS[args.data][role],
                                                         **timing(REFERENCE[role], args.factor)))
                   for role in ("student", "teacher")}
        specs = {role: f"openai:{role}@{s.base_url}" for role, s in servers.items()}
        # Planned from the dev half (the real use: the router is calibrated there too), and from
        # runs of the submitted questions themselves (the model of `submit` alone, without the
        # difference between two halves of 655 questions).
        runs = {"dev": eval_runs(work, dev, "dev", specs), "test": eval_runs(work, test, "test", specs)}
        router = work / "router.json"
        cli(["route", "calibrate", "--student", runs["dev"][0], "--teacher", runs["dev"][1], "--target", "accuracy=0.99",
             "--out", router])
        plans: dict[tuple, dict] = {}
        chosen = [x for x in settings(args.quick, n_test) if not args.only or f"{x[0]}:{x[1]:g}:{x[2]}" in args.only]
        for mode, real_ms, c, limit, budget in chosen:
            d = real_ms * args.factor
            budget = None if budget is None else budget * args.factor
            t0 = time.monotonic()
            measured = submit(work, test, router, specs, servers, mode, d, c, limit, budget)
            row = {"mode": mode, "deadline_ms": d, "deadline_ms_real": real_ms, "concurrency": c, "n": measured["n"],
                   "budget_s": budget, "measured": measured}
            planned_row(row, plans, runs, router)
            row["seconds"] = round(time.monotonic() - t0, 1)
            results["settings"].append(row)
            print(json.dumps({k: row[k] for k in ("mode", "deadline_ms", "concurrency", "checks_dev", "checks_test",
                                                  "seconds")}), flush=True)
            (work / "results.json").write_text(json.dumps(results, indent=1))
        results["grid_picks"] = grid_picks(work, test, router, specs, servers, results["settings"], runs)
        (work / "results.json").write_text(json.dumps(results, indent=1))
        serve_deadline = 6000 * args.factor
        if args.only:
            return
        loads = SERVE_LOADS_QUICK if args.quick else SERVE_LOADS
        results["serve"] = serve_loads(work, router, test, specs, loads, serve_deadline)
        results["serve_plans"] = {c: pick(plan(*runs["test"], router, serve_deadline, c, n, None), "balanced")
                                  for c, n in loads.items()}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {work / 'results.json'}")


if __name__ == "__main__":
    main()
