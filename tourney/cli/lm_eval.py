"""`python -m tourney.cli.lm_eval ...`: lm-eval's own command line with the `tourney` model registered.

lm-eval 0.4.13 looks models up in its registry and discovers none from other packages, so this
imports routers.lm_eval_model (whose @register_model adds "tourney") and then hands the arguments
to lm-eval unchanged, e.g.

    python -m tourney.cli.lm_eval run --model tourney --model_args router=ROUTER.json \\
        --tasks gsm8k --include_path my_tasks/
"""
from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    import tourney.routers.lm_eval_model  # noqa: F401 -- registers the "tourney" model
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
