"""Text from data or users reaches the terminal as it is: rich markup in a name is never markup."""
from __future__ import annotations

from tourney.cli.common import progress_bar


def test_progress_description_is_not_markup() -> None:
    bar, _ = progress_bar("eval openai:[bold red]x[/]@http://h/v1")
    text = bar.columns[0].render(bar.tasks[0])
    assert text.plain == "eval openai:[bold red]x[/]@http://h/v1"
    assert not text.spans  # no style was taken from the text
