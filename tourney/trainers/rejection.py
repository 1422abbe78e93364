"""Rejection sampling: keep the teacher samples a verifier accepts, and measure how hard each
question was for the teacher.

Verifiers (`verifier=`):
- `gold`: a sample is accepted when its extracted answer equals the gold one under the harness's
  scorer (`harness.scoring.numbers_equal`; a choice letter must match exactly). The answer is
  re-extracted from the text when a row carries no prediction, so rows from other tools work.
- `majority`: for questions without gold (gold empty or None), the plurality of the extracted
  answers stands in for it (self-consistency). A tie goes to the answer seen first in sample order,
  so the choice is reproducible; samples with no extractable answer never vote.
- `auto` (default): `gold` where the question has a gold answer, `majority` where it has none.

Pass rate = accepted samples / samples that did not fail. It is the teacher's difficulty signal
(for majority, it is the agreement rate). Failed requests (`error` set) are neither candidates nor
counted; a question whose every request failed has pass rate None. A question with no accepted
sample stays listed in pass_rates.jsonl with kept=0 and in `SelectionStats.rejected`.

Keep policies (`policy=`), among accepted samples:
- `first`: the lowest sample index (with greedy decoding, the greedy answer);
- `shortest`: fewest completion tokens, then fewest characters, then lowest index: the cheapest
  correct reasoning to imitate;
- `all-distinct`: every accepted sample whose text differs after normalisation (case folded,
  whitespace collapsed); several SFT lines then share one question id.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

from tourney.errors import ConfigError
from tourney.harness.prompts import LETTERS
from tourney.harness.scoring import extract_answer, numbers_equal
from tourney.harness.votes import majority_vote
from tourney.trainers.cot import CoTSample, read_cot

POLICIES = ("first", "shortest", "all-distinct")
VERIFIERS = ("auto", "gold", "majority")
PASS_RATES_FILE = "pass_rates.jsonl"


@dataclass
class SFTExample:
    """One line of sft.jsonl: a question and one accepted teacher solution."""

    id: str
    question: str
    type: str
    solution: str  # the kept teacher text, thinking included: what the student learns to write
    answer: str | None  # the gold answer, or the majority answer when there was no gold
    pass_rate: float | None
    mean_logprob: float | None
    tokens: int  # completion tokens of the solution
    sample: int  # which teacher sample it was, for tracing back to cot.jsonl
    choices: list[str] | None = None  # a multiple-choice question's options, listed in its prompt

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["choices"] is None:
            del d["choices"]  # open-ended rows stay as they were
        return d


@dataclass
class QuestionPassRate:
    """One line of pass_rates.jsonl."""

    id: str
    type: str
    verifier: str  # "gold" or "majority"
    n: int  # samples that did not fail
    accepted: int
    pass_rate: float | None  # accepted / n; None when n == 0
    kept: int  # SFT lines written for it (0: rejected)
    answer: str | None  # the answer accepted samples agree with

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SelectionStats:
    questions: int = 0
    samples: int = 0
    failed_samples: int = 0  # requests that errored
    accepted_samples: int = 0
    kept: int = 0  # SFT lines
    rejected: list[str] = field(default_factory=list)  # ids of questions with nothing kept
    by_verifier: dict[str, int] = field(default_factory=dict)  # questions verified each way
    pass_rates: list[QuestionPassRate] = field(default_factory=list)

    @property
    def mean_pass_rate(self) -> float | None:
        rates = [p.pass_rate for p in self.pass_rates if p.pass_rate is not None]
        return sum(rates) / len(rates) if rates else None

    def summary(self) -> dict:
        return {"questions": self.questions, "samples": self.samples, "failed_samples": self.failed_samples,
                "accepted_samples": self.accepted_samples, "kept": self.kept, "rejected": len(self.rejected),
                "by_verifier": self.by_verifier, "mean_pass_rate": self.mean_pass_rate}


class Selection(NamedTuple):
    kept: list[SFTExample]
    stats: SelectionStats


_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """What makes two solutions the same for `all-distinct`: case and whitespace do not count."""
    return _SPACE.sub(" ", text).strip().casefold()


def _prediction(row: CoTSample) -> str | None:
    return row.prediction if row.prediction is not None else extract_answer(row.output)


def _matches_gold(pred: str | None, gold: str) -> bool:
    if pred is None:
        return False
    gold = gold.strip()
    if len(gold) == 1 and gold.upper() in LETTERS:  # multiple choice: the gold is a letter
        return pred.strip().upper() == gold.upper()
    return numbers_equal(pred, gold)


def _keep(accepted: list[CoTSample], policy: str) -> list[CoTSample]:
    if not accepted:
        return []
    if policy == "first":
        return [min(accepted, key=lambda r: r.sample)]
    if policy == "shortest":
        return [min(accepted, key=lambda r: (r.completion_tokens, len(r.output), r.sample))]
    seen: set[str] = set()
    kept = []
    for r in sorted(accepted, key=lambda r: r.sample):
        key = normalise_text(r.output)
        if key not in seen:
            seen.add(key)
            kept.append(r)
    return kept


def select(
    rows_by_question: Mapping[str, Sequence[CoTSample]], policy: str = "first", verifier: str = "auto"
) -> Selection:
    """Verify each question's samples, keep some by `policy`; see the module doc."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if verifier not in VERIFIERS:
        raise ConfigError(f"unknown verifier {verifier!r}; expected one of {', '.join(VERIFIERS)}")
    stats = SelectionStats()
    kept_all: list[SFTExample] = []
    for qid, rows in rows_by_question.items():
        if not rows:
            continue
        stats.questions += 1
        stats.samples += len(rows)
        ok = [r for r in rows if r.error is None]
        stats.failed_samples += len(rows) - len(ok)
        gold = (rows[0].gold or "").strip()
        how = ("gold" if gold else "majority") if verifier == "auto" else verifier
        stats.by_verifier[how] = stats.by_verifier.get(how, 0) + 1
        if how == "gold":
            # With the gold verifier forced, a question without gold can accept nothing.
            answer: str | None = gold or None
            accepted = [r for r in ok if gold and _matches_gold(_prediction(r), gold)]
        else:
            answer = majority_vote([_prediction(r) for r in sorted(ok, key=lambda r: r.sample)]).answer
            accepted = [r for r in ok if answer is not None and _prediction(r) == answer]
        rate = len(accepted) / len(ok) if ok else None
        kept = _keep(accepted, policy)
        stats.accepted_samples += len(accepted)
        stats.kept += len(kept)
        if not kept:
            stats.rejected.append(qid)
        stats.pass_rates.append(QuestionPassRate(id=qid, type=rows[0].type, verifier=how, n=len(ok),
                                                 accepted=len(accepted), pass_rate=rate, kept=len(kept),
                                                 answer=answer))
        kept_all.extend(SFTExample(id=r.id, question=r.question, type=r.type, solution=r.output, answer=answer,
                                   pass_rate=rate, mean_logprob=r.mean_logprob, tokens=r.completion_tokens,
                                   sample=r.sample, choices=r.choices) for r in kept)
    return Selection(kept_all, stats)


def group_by_question(rows: Iterable[CoTSample]) -> dict[str, list[CoTSample]]:
    """Rows of one id together, in first-seen question order and sample order."""
    out: dict[str, list[CoTSample]] = {}
    for r in rows:
        out.setdefault(r.id, []).append(r)
    for samples in out.values():
        samples.sort(key=lambda r: r.sample)
    return out


def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def select_file(cot_path: str | Path, out: str | Path, policy: str = "first", verifier: str = "auto") -> SelectionStats:
    """cot.jsonl -> sft.jsonl at `out`, and pass_rates.jsonl beside it (every question, kept or not)."""
    out = Path(out)
    kept, stats = select(group_by_question(read_cot(cot_path)), policy=policy, verifier=verifier)
    _write_jsonl(out, (e.to_dict() for e in kept))
    _write_jsonl(out.parent / PASS_RATES_FILE, (p.to_dict() for p in stats.pass_rates))
    return stats
