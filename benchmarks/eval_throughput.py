"""Throughput of `tourney eval` against servers, side by side with lm-eval's `local-completions`.

    PYTHONPATH=. .venv/bin/python benchmarks/eval_throughput.py [--limit 500] [--concurrency 32 128]
        [--repeats 2] [--llama-limit 100] [--no-realistic]

Part 1, a continuously batching server: benchmarks/stub_server.py answers the miniature test set
(each request its own latency whatever the concurrency: base + per-token time, one question in
twenty five times longer; answers known). Part 1b, the same on realistic data: GSM8K questions
answered with the real 175B model's recorded solutions (../shared/data/gsm8k-recorded), whose
lengths, and their relation to the question's length, are a real model's. For each C, alternately: `tourney eval --concurrency C`
and `lm_eval --model local-completions --model_args num_concurrent=C,...` on the same server, the
same questions and prompts. Reported per run: the whole command's wall time; the answering
span the server saw (first request's arrival to last response's end, so client start-up and
report writing are left out); the ideal, sum of latencies / C; a floor no client can beat,
max(ideal, the longest single latency); and `schedule`, what a perfect client sending in the same
order achieves (each request started the instant a slot frees: list scheduling over the known
latencies), so that measured / schedule is the client's own overhead. lm-eval sends the longest
prompt first (its Collator), tourney the longest question (harness.pipeline); `schedule` is each
client's own order. `served / nominal` is how much
longer the requests really took at the server than the model says (above 1 when the machine's
CPUs are short and the stub's own event loop falls behind), and `slot use` the share of the span
that the C slots were busy.

Part 2 (--llama-limit > 0), the real llama.cpp server (llama-cpp-python, one request at a time):
`tourney eval` with 1 and with 8 requests in flight against a plain sequential client (one streamed request after
another with httpx) on the shipped mini-student exported to GGUF: there concurrency cannot help,
and the ratio to the sequential client is the client's own cost.
"""
from __future__ import annotations

import argparse
import heapq
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from stub_server import Stub, Timing, load_answers  # noqa: E402
from tests.stub_openai import stub_server  # noqa: E402
from tourney.harness.pipeline import Prompting, send_order  # noqa: E402
from tourney.harness.questions import load_questions  # noqa: E402
from tourney.harness.tournament import MINI_TEST  # noqa: E402
from tourney.harness.types import Question  # noqa: E402

MAX_TOKENS = 256
GSM8K_RECORDED = ROOT.parent / "shared" / "data" / "gsm8k-recorded" / "dev.jsonl"
RECORDED_SYSTEM = "175b_finetuning"
# The same prompts tourney sends (its `base` and `mc-base` templates), the same greedy settings;
# the target is the choice's text for multiple choice (what the stub's answer ends with) and the
# number after `#### ` otherwise. Placeholders DATA and MAX_TOKENS are replaced, not formatted,
# because Jinja's braces would need escaping.
TASK = r"""task: tourney_mini_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: DATA
test_split: test
output_type: generate_until
doc_to_text: "Question: {{question}}\n{% if choices is defined and choices %}{% for c in choices %}{{ 'ABCDEFGHIJ'[loop.index0] }}. {{ c }}\n{% endfor %}{% endif %}Answer:"
doc_to_target: "{% if choices is defined and choices %}{{ choices['ABCDEFGHIJ'.index(answer)] }}{% else %}{{ answer.split('#### ')[-1] }}{% endif %}"
generation_kwargs:
  until: ["\nQuestion:"]
  max_gen_toks: MAX_TOKENS
  do_sample: false
filter_list:
  - name: final
    filter:
      - function: regex
        regex_pattern: "(?:####|A:) *(-?[0-9]+)|([^\\s.#][^.\\n]*?)\\.?\\s*$"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def schedule(lat: list[float], c: int) -> float:
    """Makespan of `lat` sent in this order with c slots, each request the instant a slot frees."""
    slots = [0.0] * c
    for x in lat:
        heapq.heappush(slots, heapq.heappop(slots) + x)
    return max(slots)


def questions(limit: int, data: Path = MINI_TEST) -> list[Question]:
    return load_questions(data)[:limit]


def latencies(qs: list[Question], timing: Timing, data: Path = MINI_TEST, system: str | None = None) -> list[float]:
    stub = Stub(load_answers(data, system), timing)
    out = []
    for q in qs:
        _, pieces, scale, _ = stub.plan(f"Question: {q.question}\nAnswer:", MAX_TOKENS)
        out.append(stub.latency_s(len(pieces), scale))
    return out


def send_orders(qs: list[Question]) -> dict[str, list[int]]:
    """The order each client sends in: tourney longest question first (harness.pipeline), lm-eval
    longest prompt first (its Collator sorts the rendered contexts); both stable, and both render
    the same prompts (tourney's templates; the lm-eval task above copies them)."""
    prompts, _ = Prompting().render(qs)
    return {"tourney": send_order(qs), "lm-eval": sorted(range(len(qs)), key=lambda i: -len(prompts[i]))}


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc


def tourney_cmd(spec: str, limit: int, c: int, out: Path, data: Path = MINI_TEST) -> list[str]:
    return [sys.executable, "-m", "tourney", "eval", "--model", spec, "--data", str(data), "--limit",
            str(limit), "--concurrency", str(c), "--max-tokens", str(MAX_TOKENS), "--out", str(out), "--overwrite"]


def lmeval_cmd(base_url: str, limit: int, c: int, task_dir: Path, out: Path) -> list[str]:
    args = (f"model=stub,base_url={base_url}/completions,num_concurrent={c},tokenized_requests=False,"
            "tokenizer_backend=None,max_retries=1")
    return [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", args,
            "--tasks", "tourney_mini_bench", "--include_path", str(task_dir), "--limit", str(limit),
            "--batch_size", "1", "--output_path", str(out)]


def reset(server) -> None:
    httpx.post(server.base_url.removesuffix("/v1") + "/stats/reset", timeout=5.0)


def part_stub(args: argparse.Namespace, work: Path, data: Path = MINI_TEST, system: str | None = None) -> None:
    timing = Timing(chunk_tokens=args.chunk_tokens)
    qs = questions(args.limit, data)
    lat = latencies(qs, timing, data, system)
    orders = send_orders(qs)
    task_dir = work / f"task-{data.stem}-{system}"
    task_dir.mkdir()
    (task_dir / "tourney_mini_bench.yaml").write_text(TASK.replace("DATA", str(data)).replace("MAX_TOKENS", str(MAX_TOKENS)))
    what = f"GSM8K questions answered with {system}'s recorded outputs" if system else "miniature questions"
    print(f"## Continuously batching stub server: {len(qs)} {what}, {timing}")
    print(f"sum of latencies {sum(lat):.1f} s, longest {max(lat):.2f} s, mean {statistics.mean(lat):.3f} s\n")
    print("| client | C | whole command s | answering s | ideal s | answering / ideal | floor s | "
          "answering / floor | schedule s | answering / schedule | served / nominal | slot use | max in flight "
          "| accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with stub_server(data, system=system, **vars(timing)) as server:
        for c in args.concurrency:
            ideal = sum(lat) / c
            floor = max(ideal, max(lat))
            perfect = {name: schedule([lat[i] for i in order], c) for name, order in orders.items()}
            results: dict[str, list[tuple[float, float]]] = {"tourney": [], "lm-eval": []}
            for rep in range(args.repeats):
                for name in ("tourney", "lm-eval"):
                    reset(server)
                    out = work / f"{name}-{data.stem}-{c}-{rep}"
                    if name == "tourney":
                        wall, _ = timed(tourney_cmd(server.spec, args.limit, c, out, data))
                        acc = json.loads((out / "report.json").read_text())["overall"]["accuracy"]
                    else:
                        wall, proc = timed(lmeval_cmd(server.base_url, args.limit, c, task_dir, out))
                        acc = _lmeval_accuracy(out)
                    st = server.stats()
                    span = st["answering_s"]
                    results[name].append((wall, span))
                    print(f"| {name} | {c} | {wall:.2f} | {span:.2f} | {ideal:.2f} | {span / ideal:.2f}x | "
                          f"{floor:.2f} | {span / floor:.2f}x | {perfect[name]:.2f} | {span / perfect[name]:.2f}x | "
                          f"{st['served_s'] / st['nominal_s']:.3f} | {st['served_s'] / (span * c):.2f} | "
                          f"{st['max_in_flight']} | {acc} |", flush=True)
            t_wall = statistics.median(w for w, _ in results["tourney"])
            l_wall = statistics.median(w for w, _ in results["lm-eval"])
            t_span = statistics.median(s for _, s in results["tourney"])
            l_span = statistics.median(s for _, s in results["lm-eval"])
            print(f"| **median C={c}** | | tourney {t_wall:.2f} / lm-eval {l_wall:.2f} = "
                  f"**{l_wall / t_wall:.2f}x faster** | tourney {t_span / ideal:.2f}x, lm-eval {l_span / ideal:.2f}x "
                  "of ideal | | | | | | | | | | |", flush=True)


def _lmeval_accuracy(out: Path) -> float | None:
    for path in out.rglob("results_*.json"):
        res = json.loads(path.read_text())["results"]["tourney_mini_bench"]
        return res.get("exact_match,final")
    return None


def sequential_client(base_url: str, qs: list[Question]) -> float:
    """One streamed completion after another, the simplest client there is (tourney's prompts)."""
    prompts, _ = Prompting().render(qs)
    t = time.perf_counter()
    with httpx.Client(timeout=120.0) as client:
        for prompt in prompts:
            body = {"model": "mini", "prompt": prompt, "max_tokens": 96, "temperature": 0.0,
                    "stop": ["\nQuestion:"], "stream": True, "repeat_penalty": 1.0}
            with client.stream("POST", f"{base_url}/completions", json=body) as resp:
                for _ in resp.iter_lines():
                    pass
    return time.perf_counter() - t


def part_llama(args: argparse.Namespace, work: Path) -> None:
    from tests.llama_server import llama_server, missing_server_modules
    from tourney.harness.report import write_reports
    from tourney.harness.runner import EvalConfig, run_eval
    from tourney.models.gguf_export import export_gguf
    from tourney.models.registry import MINI_DIR, load_backend

    if missing_server_modules():
        print(f"\nllama.cpp part skipped: missing {missing_server_modules()}")
        return
    gguf = export_gguf(MINI_DIR / "student", work / "student.gguf")
    qs = questions(args.llama_limit)
    print(f"\n## llama.cpp server (one request at a time): {len(qs)} miniature questions, mini-student GGUF\n")
    print("| run | sequential httpx client s | tourney C=1 answering s | ratio | tourney C=8 answering s | ratio |")
    print("|---|---|---|---|---|---|")
    with llama_server(gguf, n_ctx=512) as server:
        sequential_client(server.base_url, qs[:5])  # warm-up

        def ours(c: int, out: Path) -> float:
            # run_eval with the backend built: answering + writing; reports re-rendered alone and
            # subtracted, so the figure is the loop's own, as the sequential client's is
            options = {"concurrency": c, "extra_body": {"repeat_penalty": 1.0}}
            cfg = EvalConfig(model=server.spec(), data=str(MINI_TEST), out=str(out), limit=len(qs), max_tokens=96,
                             model_args=options)
            backend = load_backend(server.spec(), **options)
            t = time.perf_counter()
            run_eval(cfg, backend, overwrite=True)
            total = time.perf_counter() - t
            t = time.perf_counter()
            write_reports(out)
            backend.close()
            return total - (time.perf_counter() - t)

        for rep in range(args.llama_repeats):
            seq = sequential_client(server.base_url, qs)
            one = ours(1, work / f"llama-1-{rep}")
            eight = ours(8, work / f"llama-8-{rep}")
            print(f"| {rep + 1} | {seq:.2f} | {one:.2f} | {one / seq:.2f} | {eight:.2f} | {eight / seq:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--llama-limit", type=int, default=100, help="0 skips the llama.cpp part")
    ap.add_argument("--llama-repeats", type=int, default=5)
    ap.add_argument("--skip-stub", action="store_true")
    ap.add_argument("--chunk-tokens", type=int, default=16,
                    help="tokens per streamed chunk of the stub: with 4, its own event loop falls behind at 128 "
                         "streams on 2 cores (served / nominal > 1.4), which would measure the stub, not the client")
    ap.add_argument("--realistic", action=argparse.BooleanOptionalAction, default=True,
                    help="also GSM8K with a real model's recorded outputs (../shared/data/gsm8k-recorded)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        work = Path(tmp)
        if not args.skip_stub:
            part_stub(args, work)
            if args.realistic and GSM8K_RECORDED.exists():
                print()
                part_stub(args, work, GSM8K_RECORDED, RECORDED_SYSTEM)
            elif args.realistic:
                print(f"\nrealistic part skipped: {GSM8K_RECORDED} is absent")
        if args.llama_limit:
            part_llama(args, work)


if __name__ == "__main__":
    main()
