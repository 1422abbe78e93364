"""The markdown tables of benchmarks/reference_sim.py's results.json (for benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/reference_sim_report.py /tmp/refsim/results.json
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tourney.routers.planning.plan import MAX_MISSED, PlanOption, recommend  # noqa: E402

MODES = ("speed", "balanced", "accuracy")


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


CHECKS = ("accuracy_in_ci", "p95_within_15pct", "missed_within_1pt", "missed_in_plan_ci")  # reference_sim.compare


def ok(checks: dict) -> str:
    return "".join("y" if checks[k] else "**n**" for k in CHECKS if k in checks)


def as_option(label: str, m: dict) -> PlanOption:
    """A measured setting in the planner's terms, so the same rule picks among them."""
    return PlanOption(mode=label, label=label, threshold=None, dev_share=None, accuracy=m["accuracy"],
                      ci95=tuple(m["ci95"]), latency_p50_s=m["p50_s"], latency_p95_s=m["p95_s"],
                      missed_share=m["missed_share"], budget_share=m["budget_share"], teacher_share=m["teacher_share"],
                      student_s_per_1k=m["student_s_per_1k"], teacher_s_per_1k=m["teacher_s_per_1k"], makespan_s=m["spent_s"],
                      feasible=m["missed_share"] <= MAX_MISSED and m["budget_share"] == 0)


def planned_option(label: str, p: dict) -> PlanOption:
    keys = set(PlanOption.__dataclass_fields__)
    d = {k: v for k, v in p.items() if k in keys}
    d["ci95"] = tuple(d["ci95"])
    if "missed_ci95" in d:
        d["missed_ci95"] = tuple(d["missed_ci95"])
    d["threshold"] = None
    return PlanOption(**{**d, "label": label})


def settings_table(res: dict) -> list[str]:
    f = res["factor"]
    out = ["| mode | deadline s (reference) | C | n | budget s | accuracy % measured [95%] | planned: dev / test runs "
           "| p95 s measured | planned: dev / test | missed % measured | planned: dev / test | teacher % measured / "
           "planned (test) | checks dev / test |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["settings"]:
        m, pd, pt = r["measured"], r["planned_dev"], r["planned_test"]
        out.append(
            f"| {r['mode']} | {r['deadline_ms'] / 1000:g} ({r['deadline_ms_real'] / 1000:g}) | {r['concurrency']} | {r['n']} "
            f"| {'-' if r['budget_s'] is None else format(r['budget_s'], 'g')} "
            f"| {pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}] | {pct(pd['accuracy'])} / {pct(pt['accuracy'])} "
            f"| {m['p95_s']:.3f} | {pd['latency_p95_s']:.3f} / {pt['latency_p95_s']:.3f} "
            f"| {pct(m['missed_share'])} | {pct(pd['missed_share'])} / {pct(pt['missed_share'])} "
            f"| {pct(m['teacher_share'])} / {pct(pt['teacher_share'])} | {ok(r['checks_dev'])} / {ok(r['checks_test'])} |")
    out.append(f"\n(times in simulated seconds: reference-hardware seconds x {f:g}; checks: accuracy within the "
               "measured 95% interval, p95 within 15%, missed share within 1 point, and (where the plan has it) the "
               "measured missed share inside the plan's own 95% interval; y = holds)")
    return out


def check_counts(res: dict) -> list[str]:
    """How many settings pass each check, planned from each half's runs."""
    out = []
    for half in ("test", "dev"):
        checks = [r[f"checks_{half}"] for r in res["settings"]]
        counts = ", ".join(f"{k} {sum(bool(c.get(k)) for c in checks)}/{len(checks)}"
                           for k in CHECKS if any(k in c for c in checks))
        out.append(f"planned from the {half} half's runs: {counts}")
    return out


def recommendations(res: dict) -> list[str]:
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in res["settings"]:
        groups[(r["deadline_ms"], r["concurrency"], r["n"], r["budget_s"])][r["mode"]] = r
    out = ["| deadline s | C | n | budget s | measurements choose | plan (dev runs) chooses | plan (test runs) chooses "
           "| plan's own pick over its whole grid (dev runs) |", "|---|---|---|---|---|---|---|---|"]
    for (d, c, n, b), by_mode in groups.items():
        labels = [m for m in MODES if m in by_mode]
        if len(labels) < 2:
            continue
        picks = []
        for src in ("measured", "planned_dev", "planned_test"):
            opts = [as_option(m, by_mode[m]["measured"]) if src == "measured" else planned_option(m, by_mode[m][src])
                    for m in labels]
            i, _ = recommend(opts, "best")
            picks.append("none" if i is None else labels[i])
        grid = next(iter(by_mode.values()))["recommended_dev"] or "none"
        out.append(f"| {d / 1000:g} | {c} | {n} | {'-' if b is None else format(b, 'g')} | {picks[0]} | {picks[1]} "
                   f"| {picks[2]} | {grid} |")
    return out


def serve_table(res: dict) -> list[str]:
    out = ["| clients | requests | p50 s measured / planned | p95 s measured / planned | teacher % measured / planned "
           "| throughput req/s |", "|---|---|---|---|---|---|"]
    plans = res.get("serve_plans", {})
    for s in res.get("serve", []):
        p = plans.get(str(s["clients"])) or plans.get(s["clients"])
        out.append(f"| {s['clients']} | {s['requests']} | {s['p50_s']:.3f} / {p['latency_p50_s']:.3f} "
                   f"| {s['p95_s']:.3f} / {p['latency_p95_s']:.3f} | {pct(s['teacher_share'])} / {pct(p['teacher_share'])} "
                   f"| {s['throughput_rps']:.1f} |")
    return out


def at_99(res: dict) -> list[str]:
    """Balanced against accuracy mode, one at a time and at C 64: measured (the router calibrated
    at 99% of the teacher's accuracy on dev) and, over the plan's whole grid (test runs), the
    fewest teacher calls that plan 99% of accuracy mode's planned accuracy."""
    out = ["| C | deadline s | source | balanced accuracy % / accuracy mode's | balanced p50 / p95 s | accuracy mode p50 / p95 s "
           "| teacher % (balanced) |", "|---|---|---|---|---|---|---|"]
    rows = {(r["concurrency"], r["deadline_ms"], r["mode"]): r for r in res["settings"] if r["budget_s"] is None}
    longest = {c: max(d for (c2, d, _) in rows if c2 == c) for (c, _, _) in rows}
    for (c, d, mode), r in sorted(rows.items()):  # at each C the longest deadline: the modes' own speed
        if mode != "balanced" or c not in (1, 64) or d != longest[c] or (c, d, "accuracy") not in rows:
            continue
        a = rows[(c, d, "accuracy")]
        mb, ma = r["measured"], a["measured"]
        out.append(f"| {c} | {d / 1000:g} | measured (router) | {pct(mb['accuracy'])} / {pct(ma['accuracy'])} "
                   f"| {mb['p50_s']:.3f} / {mb['p95_s']:.3f} | {ma['p50_s']:.3f} / {ma['p95_s']:.3f} | {pct(mb['teacher_share'])} |")
        opts = r["options_test"]
        acc = next(o for o in opts if o["label"] == "accuracy")
        good = [o for o in opts if o["mode"] == "balanced" and o["accuracy"] >= 0.99 * acc["accuracy"]]
        if good:
            o = min(good, key=lambda o: o["teacher_share"])
            out.append(f"| {c} | {d / 1000:g} | planned, {o['label']} | {pct(o['accuracy'])} / {pct(acc['accuracy'])} "
                       f"| {o['latency_p50_s']:.3f} / {o['latency_p95_s']:.3f} "
                       f"| {acc['latency_p50_s']:.3f} / {acc['latency_p95_s']:.3f} | {pct(o['teacher_share'])} |")
    return out


def picks_table(res: dict) -> list[str]:
    """The dev plan's own pick over its grid, submitted (routers file with that threshold)."""
    out = ["| pick | deadline s | C | n | accuracy % measured [95%] | planned: dev / test | p95 s measured | planned: dev / test "
           "| missed % measured | planned: dev / test | teacher % measured | planned: dev / test |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in res.get("grid_picks", []):
        m, pd, pt = g["measured"], g["planned_dev"], g["planned_test"]
        out.append(f"| {g['label']} | {g['deadline_ms'] / 1000:g} | {g['concurrency']} | {g['n']} "
                   f"| {pct(m['accuracy'])} [{pct(m['ci95'][0])}, {pct(m['ci95'][1])}] | {pct(pd['accuracy'])} / {pct(pt['accuracy'])} "
                   f"| {m['p95_s']:.3f} | {pd['latency_p95_s']:.3f} / {pt['latency_p95_s']:.3f} "
                   f"| {pct(m['missed_share'])} | {pct(pd['missed_share'])} / {pct(pt['missed_share'])} "
                   f"| {pct(m['teacher_share'])} | {pct(pd['teacher_share'])} / {pct(pt['teacher_share'])} |")
    return out


def main() -> None:
    res = json.loads(Path(sys.argv[1]).read_text())
    print("\n".join(settings_table(res)))
    print()
    print("\n".join(check_counts(res)))
    print()
    print("\n".join(recommendations(res)))
    print()
    print("\n".join(serve_table(res)))
    print()
    print("\n".join(at_99(res)))
    if res.get("grid_picks"):
        print()
        print("\n".join(picks_table(res)))


if __name__ == "__main__":
    main()
