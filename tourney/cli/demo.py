"""`tourney demo`: the shipped miniature models on the miniature tournament's test set, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tourney.errors import DataError
from tourney.cli.common import with_backend
from tourney.harness.compare import rich_comparison, write_compare
from tourney.harness.questions import load_questions
from tourney.harness.runner import EvalConfig, run_eval
from tourney.harness.tournament import MINI_TEST
from tourney.models.registry import ALIASES, MINI_DIR

# Longest gold solution in the miniature set is ~60 tokens; 96 leaves room for a wandering model.
DEMO_MAX_TOKENS = 96
DEMO_BATCH = 50


def demo_models() -> list[str]:
    """Aliases of the miniature checkpoints that are present, teacher first."""
    return [a for a in ("mini-teacher", "mini-distilled", "mini-student")
            if (MINI_DIR / a.removeprefix("mini-") / "config.json").exists()]


def run_demo(out: str, limit: int | None = None, overwrite: bool = False,
             echo: Callable[[str], None] = print) -> dict[str, dict]:
    from rich.console import Console

    models = demo_models()
    if not models:
        raise DataError(f"no miniature checkpoints under {MINI_DIR}; run `tourney mini train --install`")
    # Multiple-choice answers are a few tokens and worked solutions dozens; a batch waits for its
    # longest answer, so questions go in batches of one kind: knowledge first, then arithmetic.
    questions = load_questions(str(MINI_TEST), limit=limit)
    questions = sorted(questions, key=lambda q: not q.is_multiple_choice)
    reports = {}
    for alias in models:
        options = {"batch_size": DEMO_BATCH}
        cfg = EvalConfig(model=alias, data=str(MINI_TEST), out=str(Path(out) / alias), limit=limit,
                         max_tokens=DEMO_MAX_TOKENS, model_args=options)
        reports[alias] = with_backend(alias, options, f"{alias:>15}", lambda backend, progress: run_eval(
            cfg, backend, questions=questions, overwrite=overwrite, progress=progress))
    Console().print(rich_comparison(reports))
    md, page = write_compare(reports, out, stem="comparison", title="Miniature pair on the miniature tournament's test set",
                             dirs=[f"{out}/{a} ({ALIASES[a]})" for a in models])
    echo(f"wrote {md}, {page} and a report per model under {out}/")
    return reports
