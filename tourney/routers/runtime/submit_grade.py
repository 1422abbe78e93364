"""A submission scored against the gold answers its question file carries (when it carries any).

Grading happens after every answer is decided and logged, in the calling thread, so it can never
count against a question's deadline; the cascade is handed the questions without their gold, so
nothing is scored inside a timed call either (routers.runtime.submit). What is graded is the answer
submitted, the fallback included ("0" is right when the gold is 0, as a tournament would count it):
a number compared by harness.scoring.numbers_equal (exact, or math-verify under its time limit:
harness.mathverify), a choice letter by equality. Questions without a gold answer are not graded.

Per type (in their natural order, as the reports show them: harness.report_content) and overall: questions
graded, accuracy with its Wilson 95% interval, and beside them the shares that explain it: answers
from the teacher, fallbacks, deadline misses, budget-limited answers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from tourney.harness.metrics import wilson_interval
from tourney.harness.report_content import natural_order
from tourney.harness.scoring import numbers_equal
from tourney.harness.types import Question
from tourney.routers.runtime.cascade import FALLBACK, TEACHER, CascadeRecord


@dataclass(frozen=True)
class GradeGroup:
    """One question type, or all of them."""

    n: int  # questions with a gold answer
    correct: int
    accuracy: float | None  # None when n == 0
    ci95: tuple[float, float] | None  # Wilson 95%
    teacher_answers: int
    fallbacks: int
    deadline_missed: int
    budget_exhausted: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Grading:
    overall: GradeGroup
    by_type: dict[str, GradeGroup]  # natural type order (first appearance in the question file)
    ungraded: int  # answered questions without a gold answer

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall.to_dict(), "by_type": {t: g.to_dict() for t, g in self.by_type.items()},
                "ungraded": self.ungraded, "ci_method": "wilson"}


def is_right(question: Question, answer: str) -> bool:
    """Whether the submitted answer equals the question's gold one."""
    if question.is_multiple_choice:
        return answer.strip().upper() == question.answer.strip().upper()
    return numbers_equal(answer, question.answer)


def _group(pairs: Sequence[tuple[Question, CascadeRecord]]) -> GradeGroup:
    n = len(pairs)
    correct = sum(1 for q, r in pairs if is_right(q, r.answer))
    return GradeGroup(
        n=n, correct=correct, accuracy=correct / n if n else None,
        ci95=wilson_interval(correct, n) if n else None,
        teacher_answers=sum(1 for _, r in pairs if r.routed_to == TEACHER),
        fallbacks=sum(1 for _, r in pairs if r.routed_to == FALLBACK),
        deadline_missed=sum(1 for _, r in pairs if r.deadline_missed),
        budget_exhausted=sum(1 for _, r in pairs if r.budget_exhausted),
    )


def grade_submission(questions: Sequence[Question], rows: dict[str, CascadeRecord]) -> Grading | None:
    """The answered questions that have a gold answer, graded; None when none has one."""
    answered = [(q, rows[q.id]) for q in questions if q.id in rows]
    graded = [(q, r) for q, r in answered if q.answer]
    if not graded:
        return None
    by_type: dict[str, list[tuple[Question, CascadeRecord]]] = {}
    for q, r in graded:
        by_type.setdefault(q.type, []).append((q, r))
    order = natural_order(q.type for q, _ in graded)  # question-file order, or the generator's
    return Grading(overall=_group(graded), by_type={t: _group(by_type[t]) for t in order},
                   ungraded=len(answered) - len(graded))


def render_grading(g: Grading) -> str:
    """Plain text lines (click.echo prints them as they are: no markup is read in a type name)."""
    def line(name: str, x: GradeGroup) -> str:
        acc = "n/a" if x.accuracy is None or x.ci95 is None else \
            f"{x.accuracy:.3f} [{x.ci95[0]:.3f}, {x.ci95[1]:.3f}]"
        return (f"  {name}: accuracy {acc} over {x.n}; teacher answers {x.teacher_answers}, "
                f"fallbacks {x.fallbacks}, missed deadlines {x.deadline_missed}, budget-limited {x.budget_exhausted}")

    total = g.overall.n
    out = ["scored against the gold answers (Wilson 95% CI):"]
    out += [line(f"{t} ({x.n / total:.0%})", x) for t, x in g.by_type.items()]
    out.append(line("overall", g.overall))
    if g.ungraded:
        out.append(f"  {g.ungraded} answered question(s) have no gold answer and are not scored")
    return "\n".join(out)
