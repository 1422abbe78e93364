"""Text from data or users reaches the terminal as it is: rich markup in a name is never markup."""
from __future__ import annotations

from tourney.cli.common import progress_bar


def test_progress_description_is_not_markup() -> None:
    bar, _ = progress_bar("eval openai:[bold red]x[/]@http://h/v1")
    text = bar.columns[0].render(bar.tasks[0])
    assert text.plain == "eval openai:[bold red]x[/]@http://h/v1"
    assert not text.spans  # no style was taken from the text


def test_control_characters_from_a_results_file_print_as_visible_escapes(tmp_path) -> None:
    from click.testing import CliRunner

    from tests.harness.test_report import make_run, result
    from tourney.cli.main import main

    hostile = "x\x1b[31mRED\x1b]0;pwned\x07"
    run = make_run(tmp_path, rows=[result("1", type=hostile), result("2", type="[bold]b[/]")])
    for args in (["report", str(run)], ["compare", str(run), "--out", str(tmp_path / "c")]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert "\x1b" not in res.output and "\x07" not in res.output
        assert "\\x1b[31mRED" in res.output and "[bold]b[/]" in res.output
