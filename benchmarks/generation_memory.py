"""Peak memory of a 512-token generation with logprobs at V = 151,936: the HF backend's per-step
gathering against the stacked logits it used before (generate(output_logits=True), then one
log-softmax over the (rows x steps x V) stack), side by side on one random-weight model.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/generation_memory.py [--batch 1 4] [--steps 512]

The model is a Qwen3ForCausalLM with Qwen3's vocabulary and a tiny body (1 layer, width 64), so
what is measured is what the vocabulary costs; the prompt uses the miniature tokenizer's ids and
EOS is never sampled in practice (random weights over 151,936 ids), so every row runs all steps.
Memory: LiveStorageBytes below, the same count torch's MemTracker keeps (benchmarks/
loss_memory.py), which refuses a module called once per step: a TorchDispatchMode that adds
every new tensor storage an op returns and subtracts it when the storage is freed (a weak
reference; torch keeps one Python object per storage), keeping the peak. It runs around the
generation and its logprob extraction, in a fresh subprocess per case, with the OS's peak
resident set (VmHWM, restarted via /proc/self/clear_refs) beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

V = 151_936
GB = 1024**3


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0


def live_storage_bytes():
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveStorageBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = self.peak = 0
            self._refs: dict[int, weakref.ref] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self._add(t.untyped_storage())
            return out

        def _add(self, st) -> None:
            key, n = id(st), st.nbytes()
            if n == 0 or key in self._refs:
                return

            def freed(_ref, key=key, n=n) -> None:
                self.live -= n
                self._refs.pop(key, None)

            self._refs[key] = weakref.ref(st, freed)
            self.live += n
            self.peak = max(self.peak, self.live)

    return LiveStorageBytes()


def _one(how: str, batch: int, steps: int, k: int) -> dict:
    import torch
    from transformers import AutoTokenizer

    from tourney.models.hf_backend import HFBackend
    from tourney.models.mini.arch import MiniArch, build_model
    from tourney.models.registry import MINI_DIR, parse_spec
    from tourney.models.types import GenConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(MINI_DIR / "student"))
    model = build_model(MiniArch(64, 128, 1, 2, 1, 32), vocab_size=V, eos_id=tok.eos_token_id).eval()
    backend = HFBackend(parse_spec("hf:bench"), model=model, tokenizer=tok, device="cpu", batch_size=batch)
    prompts = [f"Question: Ava has {i + 3} coins. How many coins does Ava have now?\nAnswer:" for i in range(batch)]
    cfg = GenConfig(max_tokens=steps, logprobs=k)
    Path("/proc/self/clear_refs").write_text("5")
    base = _vm("VmRSS")
    tracker = live_storage_bytes()
    with tracker:
        if how == "per-step":
            gens = [g for [g] in backend.generate(prompts, cfg)]
            tokens = sum(g.completion_tokens for g in gens)
        else:  # what _generate_batch did before: keep every step's raw logits, then one log-softmax
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                res = model.generate(**enc, max_new_tokens=steps, do_sample=False, return_dict_in_generate=True,
                                     output_logits=True, pad_token_id=tok.pad_token_id,
                                     temperature=None, top_p=None, top_k=None)
                logprobs = torch.stack(res.logits, dim=1).float().log_softmax(-1)
                new = res.sequences[:, enc["input_ids"].shape[1]:]
                chosen = logprobs.gather(-1, new[..., None])
                if k:
                    logprobs.topk(k, dim=-1)
            tokens = int(chosen.numel())
    peak = tracker.peak
    return {"how": how, "batch": batch, "steps": steps, "tokens": tokens, "tracker_gb": peak / GB,
            "rss_gb": (_vm("VmHWM") - base) / GB}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--logprobs", type=int, default=5, help="top-k per step, as --logprobs K asks")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        how, batch, steps = args.one
        print(json.dumps(_one(how, int(batch), int(steps), args.logprobs)))
        return
    print(f"V={V} steps={args.steps} top-k={args.logprobs}; peak during generation + logprob extraction, GB")
    print(f"{'how':14s} {'batch':>5s} {'tokens':>7s} {'tracker':>8s} {'RSS':>7s}")
    for batch in args.batch:
        for how in ("stacked (before)", "per-step"):
            cmd = [sys.executable, __file__, "--logprobs", str(args.logprobs), "--one", how.split()[0], str(batch),
                   str(args.steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                print(f"{how:14s} {batch:5d} error: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{how:14s} {batch:5d} {r['tokens']:7d} {r['tracker_gb']:8.3f} {r['rss_gb']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
