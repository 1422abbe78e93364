"""`python -m tourney.cli.lm_eval ...` (or `tourney-lm-eval ...`): lm-eval's own command line with
the `tourney` model registered.

Why a wrapper and not plain `lm_eval --model tourney`: lm-eval 0.4.13, the newest release on PyPI,
finds models only in its own registry; `--include_path` adds task YAML files, not Python code, and
it reads no entry points (upstream merged entry-point model plugins after 0.4.13, in no release
yet). So this imports routers.runtime.lm_eval_model, whose @register_model adds "tourney", and hands the
arguments to lm-eval unchanged, e.g.

    python -m tourney.cli.lm_eval run --model tourney --model_args router=ROUTER.json \\
        --tasks gsm8k --include_path my_tasks/ --output_path runs/lm-eval

lm-eval names its results folder after the model_args key pretrained/model/path, else at random;
when none is given, a `name=` naming what is evaluated is added (model_name below), so results land
in OUTPUT_PATH/tourney-ROUTER (or tourney-STUDENT_SPEC) instead of an 8-letter random folder.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

_NAME_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")  # lm-eval's, in its order


def model_name(model_args: str) -> str:
    """What a `tourney` run evaluates, as a folder name: tourney-<router file stem>, or
    tourney-<student/teacher spec>."""
    from lm_eval.utils import simple_parse_args_string

    args = simple_parse_args_string(model_args)
    if args.get("router"):
        return f"tourney-{Path(str(args['router'])).stem}"
    spec = args.get("student") or args.get("teacher") or "model"
    return f"tourney-{Path(str(spec).split(':', 1)[-1]).name or spec}"


def with_model_name(argv: list[str]) -> list[str]:
    """argv with `model=NAME` added to --model_args for `--model tourney` when no key lm-eval names
    its folder by is there."""
    def value(flag: str) -> tuple[int, str] | None:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return i + 1, argv[i + 1]
            if a.startswith(flag + "="):
                return i, a.split("=", 1)[1]
        return None

    model = value("--model")
    if model is None or model[1] != "tourney":
        return argv
    found = value("--model_args") or value("--model-args")
    if found is None:
        return argv
    i, args = found
    if any(f"{k}=" in args for k in _NAME_KEYS):
        return argv
    out = list(argv)
    new = f"{args},model={model_name(args)}"
    out[i] = new if out[i] == args else out[i].split("=", 1)[0] + "=" + new
    return out


def main(argv: Sequence[str] | None = None) -> None:
    import tourney.routers.runtime.lm_eval_model  # noqa: F401 -- registers the "tourney" model
    from lm_eval.__main__ import cli_evaluate

    args = list(sys.argv[1:] if argv is None else argv)
    sys.argv = [sys.argv[0], *with_model_name(args)]
    cli_evaluate()


if __name__ == "__main__":
    main()
