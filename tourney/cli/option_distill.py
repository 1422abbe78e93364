"""`tourney distill labels` and `tourney distill options`: option-level (soft-label) distillation.

    tourney eval --model mini-teacher --data QUESTIONS --logprobs 0 --out runs/teacher   # answers + option scores
    tourney distill labels --run runs/teacher --data QUESTIONS [--cot] --out rows.jsonl
    tourney distill options --student mini-student --data rows.jsonl --option-alpha 0.5 --out runs/soft
"""
from __future__ import annotations

import click

from tourney.cli.common import friendly_errors


@click.command("labels")
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The teacher's `tourney eval --logprobs 0` run on DATA.")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="The questions of that run.")
@click.option("--cot/--no-cot", default=False, show_default=True,
              help="Keep the teacher's reasoning (its whole output) rather than its answer alone.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Distillation rows (JSONL) to write.")
@friendly_errors
def labels_cmd(run_dir: str, data: str, cot: bool, out: str) -> None:
    """Distillation rows from a teacher's run: hard labels, option log-likelihoods (soft labels), text."""
    from tourney.trainers.teacher_labels import rows_from_run, write_rows

    rows, stats = rows_from_run(run_dir, data, cot=cot)
    write_rows(rows, out)
    click.echo(f"wrote {out}: {stats.rows} rows ({stats.multiple_choice} multiple choice) of {stats.questions} "
               f"questions; {stats.unreadable} teacher answers unreadable, left out")


@click.command("options")
@click.option("--student", required=True, help="Checkpoint folder or mini alias to start from.")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False), help="Rows from `distill labels`.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (resumed if it exists).")
@click.option("--teacher", default=None, help="Teacher checkpoint, for token-level KD (--token-alpha > 0).")
@click.option("--option-alpha", type=float, default=0.5, show_default=True, help="Weight of the soft option labels; 0 = hard labels.")
@click.option("--option-temperature", type=float, default=2.0, show_default=True,
              help="Temperature T of both option distributions in the KL term.")
@click.option("--token-alpha", type=float, default=0.0, show_default=True, help="Weight of token-level KD on the text.")
@click.option("--token-temperature", type=float, default=1.0, show_default=True,
              help="Temperature of token-level KD.")
@click.option("--epochs", type=int, default=4, show_default=True, help="Passes over the rows.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Rows per optimizer step.")
@click.option("--lr", type=float, default=2e-3, show_default=True, help="Peak learning rate (warm-up, then cosine).")
@click.option("--seed", type=int, default=0, show_default=True, help="Initial order and shuffles.")
@friendly_errors
def options_cmd(student, data, out, teacher, option_alpha, option_temperature, token_alpha, token_temperature,
                epochs, batch_size, lr, seed) -> None:
    """Train a student on distillation rows: option-level KD on multiple choice, CE or token KD on text."""
    from tourney.trainers.option_distill import OptionDistillConfig, train

    cfg = OptionDistillConfig(student=student, data=data, out=out, teacher=teacher, option_alpha=option_alpha,
                              option_temperature=option_temperature, token_alpha=token_alpha,
                              token_temperature=token_temperature, epochs=epochs, batch_size=batch_size, lr=lr,
                              seed=seed)
    click.echo(f"final weights in {train(cfg, log=click.echo)}")
