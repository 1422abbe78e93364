"""KD from a served teacher's top-k store against KD from the in-process teacher's, on the miniature pair.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/served_kd.py [--examples 512 --topk 16 --eval 200]

The shipped mini-teacher is served on 127.0.0.1 by tests/vllm_shaped_server.py (vLLM's request and
response shape: prompt_logprobs over token ids); the shipped mini-student is distilled twice with
the same data, seed and settings, once from a store the in-process teacher fills (offline_logits.
fill_store) and once from a store filled over HTTP (served_logits.fill_store_from_server). Printed:
how the two stores differ, the per-step training losses, the trained weights, and both students'
greedy answers on the miniature dev set.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=512)
    ap.add_argument("--topk", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--eval", type=int, default=200, help="dev questions each student answers")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()

    import json

    import torch
    from safetensors.torch import load_file

    from tests.vllm_shaped_server import vllm_shaped_server
    from tourney.harness.rundir import read_results
    from tourney.harness.synthetic import SynthConfig, generate, write_jsonl
    from tourney.models.registry import MINI_DIR
    from tourney.trainers.distill import train
    from tourney.trainers.distill_config import DistillTrainConfig
    from tourney.trainers.offline_logits import TopKStore

    work = Path(tempfile.mkdtemp(prefix="served-kd-"))
    data = write_jsonl(generate(SynthConfig(n=args.examples, seed=77)), work / "sft.jsonl")
    dev = Path(__file__).resolve().parents[1] / "tourney" / "harness" / "data" / "mini" / "dev.jsonl"
    common = dict(student="mini-student", data=str(data), method="kd", topk=args.topk, alpha=0.5, kd_temperature=1.0,
                  epochs=args.epochs, lr=1e-3, batch_size=16, max_len=256, seed=0, logging_steps=1,
                  eval_data=str(dev), eval_limit=args.eval, eval_max_tokens=96, kd_chunk_size=64)
    runs, secs = {}, {}
    with vllm_shaped_server(MINI_DIR / "teacher", alias="mini-teacher", max_logprobs=args.topk) as server:
        for name, teacher in (("in-process", "mini-teacher"), ("served", server.spec())):
            cfg = DistillTrainConfig(teacher=teacher, out=str(work / name), teacher_concurrency=args.concurrency,
                                     **common)
            t = time.perf_counter()
            runs[name] = train(cfg, say=lambda _m: None)
            secs[name] = time.perf_counter() - t
        requests = server.stats()["requests"]

    a, b = (TopKStore.open(work / n / f"topk-k{args.topk}") for n in runs)
    same_ids = rows = 0
    lp_diff = 0.0
    for i in range(a.num_examples):
        x, y = a.get(i), b.get(i)
        assert torch.equal(x.positions, y.positions)
        same_ids += int((x.ids == y.ids).all(-1).sum())
        rows += x.ids.shape[0]
        lp_diff = max(lp_diff, float((x.logprobs.float() - y.logprobs.float()).abs().max()))
    losses = {}
    for name, r in runs.items():
        state = json.loads((Path(r.checkpoints[-1]) / "trainer_state.json").read_text())
        losses[name] = [h["loss"] for h in state["log_history"] if "loss" in h]
    wa, wb = (load_file(str(Path(r.final) / "model.safetensors")) for r in runs.values())
    w_abs = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    w_scale = max(float(wa[k].abs().max()) for k in wa)
    outs = {n: read_results(Path(r.epochs[-1].eval_dir) / "results.jsonl") for n, r in runs.items()}
    agree = sum(x.output == y.output for x, y in zip(*outs.values()))

    print(f"examples={args.examples} top-k={args.topk} epochs={args.epochs} requests={requests} (one per example "
          f"plus retries) concurrency={args.concurrency}")
    print(f"store rows: {rows}; identical top-k ids in {same_ids} ({same_ids / rows:.2%}); "
          f"largest log-prob difference {lp_diff:.2e} (fp16 storage)")
    print(f"per-step loss: {len(losses['served'])} steps, largest |difference| "
          f"{max(abs(x - y) for x, y in zip(*losses.values())):.2e}; first {losses['served'][0]:.4f}, "
          f"last {losses['served'][-1]:.4f}")
    print(f"trained weights: largest |difference| {w_abs:.2e} (largest weight {w_scale:.2f})")
    for name, r in runs.items():
        print(f"{name:10s} accuracy {r.epochs[-1].accuracy:.4f} on {args.eval} dev questions; run {secs[name]:.0f} s")
    print(f"greedy answers identical on {agree} of {len(outs['served'])} dev questions")


if __name__ == "__main__":
    main()
