"""How often tourney's grader agrees with a benchmark's own recorded verdicts, and why it does not.

For recorded multiple-choice outputs (a `questions.jsonl`, one replay file per model, and the
benchmark's `benchmark_verdicts.jsonl` with `id`, `model`, `pred`, `correct`), and for GSM8K's
recorded solutions (`dev.jsonl` with `systems`), this prints per model:

- agreement of our verdict (harness.scoring.score) with the benchmark's, over all outputs;
- the same over the outputs where the benchmark read an explicit "answer is (X)" (MMLU-Pro's own
  first pattern), and over those of them whose statement names one option (not a hedge);
- our grading statuses (answered, unparsed, hedge, conflicting);

and a table of every class of disagreement, its count per model, one short example and the
argument for our side (CLASSES). Each disagreement gets the first class whose test it meets.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grading_agreement.py \\
        --mmlupro ../shared/data/mmlupro-recorded --gsm8k ../shared/data/gsm8k-recorded/dev.jsonl
    # the same beside the grader of an older checkout (before/after columns):
    mkdir ../before && git archive COMMIT tourney | tar -x -C ../before
    .venv/bin/python benchmarks/grading_agreement.py ... --baseline ../before
    # any other trio (for example another MMLU-Pro pair):
    .venv/bin/python benchmarks/grading_agreement.py --questions Q.jsonl --verdicts V.jsonl \\
        --replay student=S.jsonl --replay teacher=T.jsonl

MMLU-Pro's extractor, replicated to tell which of its stages gave each recorded `pred`: the
first "answer is \\(?([A-J])\\)?", else the last "[aA]nswer:\\s*([A-J])" on a line, else the last
letter A-J standing alone, else a random letter (TIGER-AI-Lab/MMLU-Pro, evaluate_from_*.py).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tourney.harness.grading_choice import OPTION_LINE, STATEMENT, STRAY, ChoiceReading, as_read, read_choice
from tourney.harness.jsonl import iter_objects
from tourney.harness.prompts import LETTERS
from tourney.harness.questions import load_questions
from tourney.harness.scoring import Score, score
from tourney.harness.types import DataError, Question

_EXPLICIT = re.compile(r"answer is \(?([A-J])\)?")
_COLON = re.compile(r".*[aA]nswer:\s*([A-J])")
_LAST_LETTER = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)

# class -> (what happens, why our verdict is the one to keep)
CLASSES: dict[str, tuple[str, str]] = {
    "hedge": ("The output names several options in one statement (\"(C) or (D)\", \"(A, G)\"); "
              "the benchmark takes the first.",
              "A model that names several options gets credit for none: reading the first would "
              "reward listing options in gold order."),
    "word-initial": ("The benchmark's pattern reads the first letter of a word after \"answer is\" "
                     "(\"answer is (Insufficient data)\" as I, \"answer is CBF\" as C).",
                     "No option was named there; we read none, or the option the output does name."),
    "continuation": ("After its answer the output invents a new exemplar with its own answer; the "
                     "benchmark read a letter from there.",
                     "Text after a new \"Question:\" header that follows the answer is not the model's "
                     "answer to this question (harness.continuation)."),
    "conflicting": ("The output's statements disagree and our first statement is not the "
                    "benchmark's first \"answer is (X)\" (an earlier \"answer would be (H)\", \"Answer: B\").",
                    "One documented rule, the first statement, over every statement form; the output "
                    "is counted as conflicting in the report."),
    "unrecorded-statement": ("The benchmark recorded no letter (no \"answer is (X)\": these verdicts "
                             "mark such outputs wrong); we read a stated answer in a form its first "
                             "pattern misses (\"Answer: G\", \"The answer is **C. ...**\", "
                             "\"The correct option is B\", \\boxed{B}) and it is the gold.",
                             "The model stated that answer; MMLU-Pro's own extractor reads \"Answer: X\" "
                             "too, in its second stage."),
    "unrecorded-option-line": ("The benchmark recorded no letter; a line of the output is nothing but "
                               "an option (\"**C**\", \"(C)\", \"C.\") and it is the gold.",
                               "A line that is only an option is the model's answer."),
    "unrecorded-stray": ("The benchmark recorded no letter; with no statement and no option line we "
                         "read a stray letter (rule 6), and it is the gold.",
                         "Arguable: MMLU-Pro's own extractor falls back to the last standalone letter "
                         "as well (its third stage), but these recorded verdicts do not."),
    "other": ("Anything else.", "Shown so that nothing is hidden."),
}


@dataclass
class Graded:
    model: str
    question: Question
    output: str
    bench_pred: str | None
    bench_correct: bool
    ours: Score
    stage: str  # which stage of the benchmark's extractor reads this output (see module doc)
    reading: ChoiceReading  # how our grader read it (rule, cut)


@dataclass
class ModelFigures:
    n: int = 0
    agree: int = 0
    n_explicit: int = 0
    agree_explicit: int = 0
    n_explicit_single: int = 0  # explicit, and our reading is not a hedge
    agree_explicit_single: int = 0
    statuses: Counter = field(default_factory=Counter)
    classes: Counter = field(default_factory=Counter)
    base_agree: int = 0  # the same two agreements by the --baseline grader
    base_agree_explicit: int = 0


def benchmark_stage(text: str) -> tuple[str, str | None]:
    """(stage, letter) of MMLU-Pro's extractor on `text` (module doc)."""
    for stage, pattern, group in (("explicit", _EXPLICIT, 1), ("answer-colon", _COLON, 1),
                                  ("last-letter", _LAST_LETTER, 0)):
        m = pattern.search(text)
        if m:
            return stage, m.group(group)
    return "none", None


def classify(g: Graded) -> str:
    """The first class of CLASSES whose test a disagreement meets."""
    if g.ours.status == "hedge":
        return "hedge"
    m = _EXPLICIT.search(g.output)
    if m and m.group(0)[-1] != ")" and re.match(r"\w", g.output[m.end(1):m.end(1) + 1]):
        return "word-initial"
    if g.reading.cut and g.ours.prediction != g.bench_pred:
        return "continuation"
    if g.ours.status == "conflicting":
        return "conflicting"
    if g.bench_pred is None and g.ours.correct:
        return {STATEMENT: "unrecorded-statement", OPTION_LINE: "unrecorded-option-line",
                STRAY: "unrecorded-stray"}.get(g.reading.source or "", "other")
    return "other"


def _read_by_id(path: Path, key: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for _, where, row in iter_objects(path):
        if not isinstance(row.get("id"), str):
            raise DataError(f"{where}: field 'id': expected a string")
        if key not in row:
            raise DataError(f"{where}: field '{key}' is missing")
        out[row["id"]] = row
    return out


def grade_choice_trio(questions: Path, replays: dict[str, Path], verdicts: Path,
                      continuation: bool = False) -> list[Graded]:
    """Every (model, question) of the replay files, graded by us and by the benchmark.

    With `continuation`, each output is followed by the next exemplar a base model would invent
    (`with_continuation`). Where the benchmark read an explicit "answer is (X)" in the output as
    recorded, its first match, and so its verdict, is unchanged; elsewhere its verdict is
    recomputed the way the recorded ones were made: the first "answer is (X)" (now perhaps the
    invented exemplar's) against the gold, no letter is wrong."""
    qs = {q.id: q for q in load_questions(str(questions))}
    bench: dict[tuple[str, str], dict] = {}
    for _, where, row in iter_objects(verdicts):
        for name, kind in (("id", str), ("model", str), ("correct", bool)):
            if not isinstance(row.get(name), kind):
                raise DataError(f"{where}: field '{name}': expected a {kind.__name__}")
        bench[(row["model"], row["id"])] = row
    out = []
    for model, path in replays.items():
        recorded = _read_by_id(path, "output")
        ids = list(recorded)
        for k, (qid, row) in enumerate(recorded.items()):
            if qid not in qs:
                raise DataError(f"{path}: id {qid!r} is not in {questions}")
            if (model, qid) not in bench:
                raise DataError(f"{verdicts}: no verdict for model {model!r}, id {qid!r}")
            q, text, b = qs[qid], str(row["output"]), bench[(model, qid)]
            pred, correct = b.get("pred"), b["correct"]
            if continuation:
                nxt = ids[(k + 1) % len(ids)]
                explicit = _EXPLICIT.search(text)
                text = with_continuation(text, qs[nxt], str(recorded[nxt]["output"]))
                if not explicit:
                    m = _EXPLICIT.search(text)
                    pred = m.group(1) if m else None
                    correct = pred == q.answer
            reading = read_choice(text, len(q.choices or ()))
            out.append(Graded(model, q, text, pred, correct, score(q, text), benchmark_stage(text)[0], reading))
    return out


def with_continuation(output: str, nxt: Question, nxt_output: str) -> str:
    """`output` run on the way a base model runs on past its answer in MMLU-Pro's 5-shot prompt:
    the next exemplar's question, options and a worked answer of its own."""
    options = "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(nxt.choices or ()))
    return (f"{output}\n\nQuestion:\n{nxt.question}\nOptions:\n{options}"
            f"Answer: Let's think step by step.{nxt_output}")


def figures(rows: list[Graded], baseline: list[bool] | None = None) -> tuple[dict[str, ModelFigures], dict[str, Graded]]:
    """Per model figures, and one example per disagreement class (the first met). `baseline`:
    another grader's verdicts on the same rows (baseline_verdicts)."""
    per: dict[str, ModelFigures] = {}
    examples: dict[str, Graded] = {}
    for i, g in enumerate(rows):
        f = per.setdefault(g.model, ModelFigures())
        same = g.ours.correct == g.bench_correct
        base_same = baseline is not None and baseline[i] == g.bench_correct
        f.n += 1
        f.agree += same
        f.base_agree += base_same
        f.statuses[g.ours.status] += 1
        if g.stage == "explicit":
            f.n_explicit += 1
            f.agree_explicit += same
            f.base_agree_explicit += base_same
            if g.ours.status != "hedge":
                f.n_explicit_single += 1
                f.agree_explicit_single += same
        if not same:
            c = classify(g)
            f.classes[c] += 1
            examples.setdefault(c, g)
    return per, examples


def excerpt(g: Graded, width: int = 150) -> str:
    """The part of an output a disagreement turns on: around the benchmark's explicit match, else
    around what we read, else the end."""
    m = _EXPLICIT.search(g.output)
    text = g.output if m or g.reading.at is None else as_read(g.output, fold=False)
    mid = m.start() if m else g.reading.at if g.reading.at is not None else len(text)
    start = max(0, mid - width // 2)
    s = text[start: start + width]
    s = ("…" if start else "") + s + ("…" if start + width < len(text) else "")
    return s.replace("\n", "⏎").replace("|", "\\|")


def _pct(k: int, n: int) -> str:
    return f"{k / n:.4f} ({k}/{n})" if n else "n/a"


def choice_markdown(label: str, rows: list[Graded], baseline: list[bool] | None = None) -> str:
    per, examples = figures(rows, baseline)
    base_head = " baseline: agreement | baseline: explicit |" if baseline is not None else ""
    lines = [f"### {label}", "",
             "| model | outputs | agreement | explicit \"answer is (X)\" | explicit, one option | "
             "answered / unparsed / hedge / conflicting |" + base_head,
             "|---|---|---|---|---|---|" + "---|---|" * (baseline is not None)]
    for model, f in per.items():
        st = "/".join(str(f.statuses.get(s, 0)) for s in ("answered", "unparsed", "hedge", "conflicting"))
        base = (f" {_pct(f.base_agree, f.n)} | {_pct(f.base_agree_explicit, f.n_explicit)} |"
                if baseline is not None else "")
        lines.append(f"| {model} | {f.n} | {_pct(f.agree, f.n)} | {_pct(f.agree_explicit, f.n_explicit)} | "
                     f"{_pct(f.agree_explicit_single, f.n_explicit_single)} | {st} |" + base)
    lines += ["", "| class | " + " | ".join(per) + " | example (gold; benchmark; ours) | why ours |",
              "|---|" + "---|" * len(per) + "---|---|"]
    for c, (what, why) in CLASSES.items():
        counts = [per[m].classes.get(c, 0) for m in per]
        if not any(counts):
            continue
        g = examples[c]
        ex = (f"`{excerpt(g)}` (gold {g.question.answer}; benchmark {g.bench_pred}; "
              f"ours {g.ours.prediction or g.ours.status})")
        lines.append(f"| **{c}**: {what} | " + " | ".join(map(str, counts)) + f" | {ex} | {why} |")
    return "\n".join(lines) + "\n"


def gsm8k_markdown(path: Path, baseline_src: Path | None = None) -> str:
    """Agreement with GSM8K's recorded `is_correct`, per system, and each disagreement's direction."""
    questions = load_questions(str(path))
    raw = [row for _, _, row in iter_objects(path)]
    items = [(q, name, str(rec["output"]), bool(rec["is_correct"]))
             for q, row in zip(questions, raw, strict=True) for name, rec in (row.get("systems") or {}).items()]
    base = (baseline_verdicts(baseline_src, path, [(q.id, out) for q, _, out, _ in items])
            if baseline_src else [False] * len(items))
    per: dict[str, list[int]] = {}
    dis: dict[str, list[tuple[str, str, str | None]]] = {}
    for (q, name, output, recorded), base_correct in zip(items, base):
        ours = score(q, output)
        f = per.setdefault(name, [0, 0, 0])
        f[0] += 1
        f[1] += ours.correct == recorded
        f[2] += base_correct == recorded
        if ours.correct != recorded:
            key = "ours correct, recorded wrong" if ours.correct else "ours wrong, recorded correct"
            dis.setdefault(key, []).append((output[-120:], q.answer, ours.prediction))
    n, k, kb = (sum(v[i] for v in per.values()) for i in range(3))
    extra = " baseline: agreement |" if baseline_src else ""
    lines = ["### GSM8K recorded solutions", "", "| system | outputs | agreement |" + extra,
             "|---|---|---|" + "---|" * bool(baseline_src)]
    lines += [f"| {name} | {v[0]} | {_pct(v[1], v[0])} |" + (f" {_pct(v[2], v[0])} |" if baseline_src else "")
              for name, v in per.items()]
    lines += [f"| all | {n} | {_pct(k, n)} |" + (f" {_pct(kb, n)} |" if baseline_src else ""), ""]
    for key, items in dis.items():
        tail, gold, pred = items[0]
        lines.append(f"- {key}: {len(items)}; e.g. `…{tail.replace(chr(10), '⏎')}` (gold {gold}, ours {pred})")
    return "\n".join(lines) + "\n"


# Run in a child process with only the baseline checkout on its path, so that two versions of the
# package never meet in one interpreter. It reads (question id, output) pairs on stdin.
_BASELINE_CHILD = """
import json, sys
from pathlib import Path
import tourney
if not Path(tourney.__file__).resolve().is_relative_to(Path(sys.argv[2])):
    sys.exit(f"no tourney package there (would import {tourney.__file__})")
from tourney.harness.questions import load_questions
from tourney.harness.scoring import score
qs = {q.id: q for q in load_questions(sys.argv[1])}
print(json.dumps([bool(score(qs[i], t).correct) for i, t in json.load(sys.stdin)]))
"""


def baseline_verdicts(src: Path, questions: Path, items: list[tuple[str, str]]) -> list[bool]:
    """Verdicts of the grader in another checkout `src` (for example the commit before a change,
    exported with `git archive COMMIT tourney | tar -x -C DIR`) on (question id, output) pairs,
    for a before/after table."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    res = subprocess.run([sys.executable, "-c", _BASELINE_CHILD, str(Path(questions).resolve()), str(Path(src).resolve())],
                         input=json.dumps(items), capture_output=True, text=True, env=env, cwd=str(Path(src).resolve()))
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"the baseline grader in {src} failed: {last}")
    return json.loads(res.stdout)


def _replay_arg(text: str) -> tuple[str, Path]:
    model, sep, path = text.partition("=")
    if not sep or not model:
        raise argparse.ArgumentTypeError(f"expected MODEL=PATH, got {text!r}")
    return model, Path(path)


def _baseline(src: Path | None, questions: Path, rows: list[Graded]) -> list[bool] | None:
    return baseline_verdicts(src, questions, [(g.question.id, g.output) for g in rows]) if src else None


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmlupro", type=Path, help="a folder like mmlupro-recorded: questions.jsonl and PAIR/ folders")
    ap.add_argument("--gsm8k", type=Path, help="GSM8K recorded solutions (dev.jsonl with `systems`)")
    ap.add_argument("--questions", type=Path, help="one trio: the questions file")
    ap.add_argument("--verdicts", type=Path, help="one trio: the benchmark's verdicts")
    ap.add_argument("--replay", type=_replay_arg, action="append", default=[], help="one trio: MODEL=REPLAY.jsonl")
    ap.add_argument("--label", default="recorded outputs", help="one trio: its heading")
    ap.add_argument("--baseline", type=Path,
                    help="also grade with the tourney package of another checkout (a folder), for before/after")
    ap.add_argument("--continuation", action="store_true",
                    help="also grade every output followed by an invented next exemplar (how base models run on)")
    args = ap.parse_args(argv)
    parts = []
    if args.mmlupro:
        for pair in sorted(p for p in args.mmlupro.iterdir() if (p / "benchmark_verdicts.jsonl").is_file()):
            replays = {m: pair / f"{m}.jsonl" for m in ("student", "teacher") if (pair / f"{m}.jsonl").is_file()}
            for cont in (False, True) if args.continuation else (False,):
                qfile = args.mmlupro / "questions.jsonl"
                rows = grade_choice_trio(qfile, replays, pair / "benchmark_verdicts.jsonl", cont)
                tail = ", each followed by an invented next exemplar" if cont else ""
                parts.append(choice_markdown(f"MMLU-Pro recorded: {pair.name}{tail}", rows,
                                             _baseline(args.baseline, qfile, rows)))
    if args.questions or args.verdicts or args.replay:
        if not (args.questions and args.verdicts and args.replay):
            ap.error("a trio needs --questions, --verdicts and at least one --replay")
        for cont in (False, True) if args.continuation else (False,):
            rows = grade_choice_trio(args.questions, dict(args.replay), args.verdicts, cont)
            tail = ", each followed by an invented next exemplar" if cont else ""
            parts.append(choice_markdown(args.label + tail, rows, _baseline(args.baseline, args.questions, rows)))
    if args.gsm8k:
        parts.append(gsm8k_markdown(args.gsm8k, args.baseline))
    if not parts:
        ap.error("nothing to measure: give --mmlupro, --gsm8k or a trio")
    text = "\n".join(parts)
    print(text)
    return text


if __name__ == "__main__":
    main()
