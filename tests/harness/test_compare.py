"""harness.compare: several runs side by side, in Markdown, HTML and an 80-column terminal table."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from tourney.cli.main import main
from tourney.errors import ConfigError
from tourney.harness.compare import load_reports, render_compare_markdown, rich_comparison, write_compare
from tests.harness.test_report import ROWS, RUN_META, make_run, result

MINI_TYPES = ["one_step", "two_step", "three_step", "long_chain"]


def mini_run(tmp_path: Path, name: str, model: str, accuracy_every: int, types=MINI_TYPES) -> Path:
    rows = [result(f"test-{i:05d}", type=types[i % len(types)], prediction="4" if i % accuracy_every else "5",
                   gold="4", latency_s=0.1 * (1 + i % len(types))) for i in range(40)]
    run = make_run(tmp_path, rows=rows, name=name)
    (run / "run.json").write_text(json.dumps(dict(RUN_META, model=model, n_questions=40)))
    return run


def test_long_format_rows_in_type_order(tmp_path: Path) -> None:
    runs = [mini_run(tmp_path, "t", "mini-teacher", 10), mini_run(tmp_path, "s", "mini-student", 2)]
    reports = load_reports(runs)
    assert list(reports) == ["mini-teacher", "mini-student"]
    md = render_compare_markdown(reports, dirs=[str(r) for r in runs])
    table = [line.split("|")[1:3] for line in md.splitlines() if line.startswith("| ")][1:]
    assert [(t.strip(), m.strip()) for t, m in table] == [
        (f"{t} (25%)", m) for t in MINI_TYPES for m in ("mini-teacher", "mini-student")
    ] + [("overall", "mini-teacher"), ("overall", "mini-student")]
    assert "| one_step (25%) | mini-student | 10 | 0.000 [0.000, 0.278] | 0.10 | 0.10 | 20 | 0 |" in md


def test_runs_of_one_model_are_told_apart_and_missing_types_skipped(tmp_path: Path) -> None:
    a = mini_run(tmp_path, "before", "mini-student", 2)
    b = mini_run(tmp_path, "after", "mini-student", 3, types=["one_step", "two_step"])
    reports = load_reports([a, b])
    assert list(reports) == ["before", "after"]
    md = render_compare_markdown(reports)
    assert "| long_chain (25%) | before |" in md and "| long_chain (25%) | after |" not in md
    with pytest.raises(ConfigError):
        load_reports([])


def test_terminal_table_fits_80_columns_and_prints_markup_literally(tmp_path: Path) -> None:
    runs = [mini_run(tmp_path, n, m, 3) for n, m in
            [("t", "mini-teacher"), ("d", "mini-distilled"), ("s", "mini-student")]]
    hostile = make_run(tmp_path, rows=[result("1", type="[bold red]boom[/]")], name="h")
    reports = load_reports([*runs, hostile])
    console = Console(width=80, record=True, color_system=None)
    console.print(rich_comparison(reports))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    # Nothing wrapped or cut: every name and interval is whole on its line.
    for name in ("mini-teacher", "mini-distilled", "mini-student", "three_step (25%)", "long_chain (25%)"):
        assert any(name in line for line in lines), name
    intervals = re.findall(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", text)
    assert len(intervals) == 4 * 3 + 1 + 4  # a whole interval on every model row, overall included
    assert all("…" not in line for line in lines)
    assert "[bold red]boom[/]" in text  # shown as typed, not taken as markup


def test_write_compare_files_and_cli(tmp_path: Path) -> None:
    runs = [mini_run(tmp_path, "t", "mini-teacher", 10), make_run(tmp_path, rows=ROWS, name="x")]
    paths = write_compare(load_reports(runs), tmp_path / "cmp")
    assert [p.name for p in paths] == ["compare.md", "compare.html"]
    page = paths[1].read_text()
    marker = '<img src="data:image/png;base64,'
    assert page.count(marker) == 3 and "<script" not in page
    for chunk in page.split(marker)[1:]:
        assert base64.b64decode(chunk.split('"', 1)[0]).startswith(b"\x89PNG")

    res = CliRunner().invoke(main, ["compare", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert "mini-teacher" in res.output and "hf:mini-student" in res.output
    assert (tmp_path / "cli" / "compare.md").is_file() and (tmp_path / "cli" / "compare.html").is_file()
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "nowhere")])
    assert res.exit_code == 2
