"""Peak memory of one KD loss (forward + backward) at Qwen3's vocabulary, today's against chunked.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/loss_memory.py \
        [--positions 1024 4096 8192] [--chunk-size 256] [--max-real-gb 12]

One sequence whose every position is an answer token (a reasoning trace), V = 151,936. Each case
runs in a fresh subprocess and reports the peak of the memory the loss allocates on top of its
inputs (inputs: logits, or hidden states and the frozen lm_head weight, and the teacher's logits
or top-64), gradients included.

How it is measured, and why it can be trusted: torch's MemTracker
(torch.distributed._tools.mem_tracker) sees every tensor storage created while it is active (a
TorchDispatchMode plus weak references to storages: the bytes torch's CPU allocator hands out for
op outputs, autograd's saved tensors and gradients) and keeps the peak of their sum. The OS's
peak resident set (VmHWM, restarted through /proc/self/clear_refs once the inputs exist) is
printed beside it as an independent check; it also sees scratch memory inside kernels.

Every tensor these losses build is (positions x V) or one chunk of it, so the peak is affine in
the number of positions. Each case is first measured at --fit-positions (256 and 512); a length
whose predicted peak would not fit this machine (--max-real-gb; today's losses at 4k and 8k
positions need tens of GB) is reported from that straight line and marked `fit`, and every
length that is run for real also shows what the line predicted, so the fit is checked where it
can be.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

V = 151_936
K = 64
STUDENT_HIDDEN = 2048  # Qwen3-30B-A3B's hidden size
GB = 1024**3

CASES = {
    # name: (description, input dtype)
    "kd_loss": ("today: dense teacher logits", "bfloat16"),
    "chunked_dense": ("chunked: dense teacher logits", "bfloat16"),
    "sparse_kd_loss": ("today: teacher top-64 (offline store)", "bfloat16"),
    "chunked_topk": ("chunked: teacher top-64, student logits", "bfloat16"),
    "chunked_topk_head": ("chunked: teacher top-64, student hidden states + frozen lm_head", "float32"),
}


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def _one(case: str, n: int, chunk: int) -> dict:
    """Run one case in this process; returns the tracker's and the OS's peaks above the inputs."""
    import torch
    from torch.distributed._tools.mem_tracker import MemTracker

    from tourney.trainers.chunked_losses import HeadInput, TopKTeacher, chunked_kd_loss
    from tourney.trainers.losses import kd_loss, sparse_kd_loss

    torch.set_num_threads(1)
    dtype = getattr(torch, CASES[case][1])
    kw = dict(temperature=1.0, alpha=0.5)
    labels = torch.randint(0, V, (1, n))
    if case.endswith("head"):
        hidden = torch.randn(1, n, STUDENT_HIDDEN, dtype=dtype).requires_grad_(True)
        weight = torch.randn(V, STUDENT_HIDDEN, dtype=dtype) * 0.02
    else:
        student = torch.randn(1, n, V, dtype=dtype).requires_grad_(True)
    if case in ("kd_loss", "chunked_dense"):
        teacher = torch.randn(1, n, V, dtype=dtype)
    else:
        ids = torch.randint(0, V, (1, n, K))
        logprobs = torch.log_softmax(torch.randn(1, n, K), -1).to(torch.float16)
    Path("/proc/self/clear_refs").write_text("5")  # the inputs are in place: restart the OS's peak here
    base = _vm("VmRSS")

    def step() -> None:
        if case == "kd_loss":
            loss = kd_loss(student, teacher, labels, **kw).total
        elif case == "chunked_dense":
            loss = chunked_kd_loss(student, teacher, labels, chunk_size=chunk, **kw).total
        elif case == "sparse_kd_loss":
            loss = sparse_kd_loss(student, ids, logprobs, labels, **kw).total
        elif case == "chunked_topk":
            loss = chunked_kd_loss(student, TopKTeacher(ids, logprobs), labels, chunk_size=chunk, **kw).total
        else:
            loss = chunked_kd_loss(HeadInput(hidden, weight), TopKTeacher(ids, logprobs), labels,
                                   chunk_size=chunk, **kw).total
        loss.backward()

    scope = locals()
    inputs = [scope[n] for n in ("student", "teacher", "hidden", "weight", "ids", "logprobs", "labels") if n in scope]
    tracker = MemTracker()
    # Registered up front, so a view of an input (weight.t() inside linear) is not counted as new
    # memory; their bytes are then taken off the peak.
    tracker.track_external(*inputs)
    with tracker:
        step()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    peak -= sum(t.untyped_storage().nbytes() for t in inputs)
    return {"case": case, "positions": n, "chunk": chunk, "tracker_gb": peak / GB,
            "rss_gb": (_vm("VmHWM") - base) / GB}


def _run(case: str, n: int, chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--one", case, str(n), str(chunk)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        return {"case": case, "positions": n, "error": tail[-1] if tail else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _inputs_gb(case: str, n: int) -> float:
    """The inputs' size, to keep a real run within this machine's memory."""
    if case.endswith("head"):
        return (n * STUDENT_HIDDEN + V * STUDENT_HIDDEN) * 4 / GB
    per = 2 * n * V / GB  # bf16 student logits
    return 2 * per if case in ("kd_loss", "chunked_dense") else per


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--positions", type=int, nargs="+", default=[1024, 4096, 8192])
    ap.add_argument("--fit-positions", type=int, nargs=2, default=[256, 512])
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--max-real-gb", type=float, default=12.0, help="largest inputs + predicted peak run for real")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        case, n, chunk = args.one
        print(json.dumps(_one(case, int(n), int(chunk))))
        return
    print(f"V={V} top-k={K} chunk={args.chunk_size} student hidden={STUDENT_HIDDEN}; peak above the inputs, "
          "forward + backward, GB (2^30 bytes)")
    print(f"{'case':18s} {'positions':>9s} {'how':>4s} {'tracker':>8s} {'RSS':>7s} {'line':>7s}  description")
    for case in args.cases:
        fit = [_run(case, n, args.chunk_size) for n in args.fit_positions]
        if any("error" in r for r in fit):
            print(f"{case:18s} error: {[r.get('error') for r in fit]}")
            continue
        (n0, y0), (n1, y1) = [(r["positions"], r["tracker_gb"]) for r in fit]
        line = lambda n: y0 + (y1 - y0) * (n - n0) / (n1 - n0)  # noqa: E731
        for r in fit:
            print(f"{case:18s} {r['positions']:9d} {'real':>4s} {r['tracker_gb']:8.3f} {r['rss_gb']:7.3f} "
                  f"{'':>7s}  {CASES[case][0]}", flush=True)
        for n in args.positions:
            if line(n) + _inputs_gb(case, n) >= args.max_real_gb:
                print(f"{case:18s} {n:9d} {'fit':>4s} {'':>8s} {'':>7s} {line(n):7.3f}  {CASES[case][0]}", flush=True)
                continue
            r = _run(case, n, args.chunk_size)
            if "error" in r:
                print(f"{case:18s} {n:9d} error: {r['error']}")
                continue
            print(f"{case:18s} {n:9d} {'real':>4s} {r['tracker_gb']:8.3f} {r['rss_gb']:7.3f} {line(n):7.3f}  "
                  f"{CASES[case][0]}", flush=True)


if __name__ == "__main__":
    main()
