"""Several evaluation runs side by side (`tourney compare RUN...`, and the demo's page).

Long format: one row per question type and model, then one overall row per model, so that the table
reads in an 80-column terminal whatever the number of models. Per row: questions, accuracy with its
95% interval, latency p50/p95 per request, and cost as mean completion tokens per sample (what a
served model is billed by, and what its compute grows with). Written as Markdown and as a
self-contained HTML page with the plots of harness.report_plots, one colour per model.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tourney.errors import ConfigError
from tourney.harness.report import (
    _acc_ci, _md_table, _num, build_report, ci_note, html_images, html_page, html_table, type_label,
)
from tourney.harness.report_content import ordered_types, printable

if TYPE_CHECKING:
    from rich.table import Table

OVERALL = "overall"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    short: str  # the header in the terminal, where width is scarce


COLUMNS: tuple[Column, ...] = (
    Column("questions", lambda g: str(g["n_questions"]), "n"),
    Column("accuracy [95% CI]", _acc_ci, "accuracy [95% CI]"),
    Column("p50 s", lambda g: _num(g["latency_p50_s"], "{:.2f}"), "p50 s"),
    Column("p95 s", lambda g: _num(g["latency_p95_s"], "{:.2f}"), "p95 s"),
    Column("tokens/sample", lambda g: _num(g["completion_tokens_mean"], "{:.0f}"), "tok"),
    Column("errors", lambda g: str(g["errors"]), "err"),
)


def run_labels(run_dirs: Sequence[str | Path], reports: Sequence[dict[str, Any]]) -> list[str]:
    """A label per run: its model's name, or its folder's name where two runs share a model."""
    models = [str(r.get("model")) for r in reports]
    labels = [m if models.count(m) == 1 else Path(d).name for m, d in zip(models, run_dirs)]
    # Two folders of one name (a/run, b/run): number them, so no column is lost.
    return [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]


def load_reports(run_dirs: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """label -> report of each run directory (see build_report), in the order given."""
    if not run_dirs:
        raise ConfigError("tourney compare: give at least one run directory")
    reports = [build_report(d) for d in run_dirs]
    return dict(zip(run_labels(run_dirs, reports), reports))


def union_types(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Every type of any run, in the first run's natural order, then the others' new ones."""
    out: list[str] = []
    for report in reports.values():
        out += [t for t in ordered_types(report) if t not in out]
    return out


@dataclass(frozen=True)
class Row:
    qtype: str  # a type name, or OVERALL
    label: str  # the type with its share in the first run that has it, or "overall"
    model: str
    cells: list[str]


def comparison_rows(reports: dict[str, dict[str, Any]]) -> list[Row]:
    """Long-format rows: per type (natural order) each model that ran it, then overall per model."""
    rows = []
    for t in union_types(reports):
        owner = next(r for r in reports.values() if t in r["by_type"])
        for model, report in reports.items():
            g = report["by_type"].get(t)
            if g is not None:
                rows.append(Row(t, type_label(owner, t), model, [c.cell(g) for c in COLUMNS]))
    rows += [Row(OVERALL, OVERALL, m, [c.cell(r[OVERALL]) for c in COLUMNS]) for m, r in reports.items()]
    return rows


def _facts(reports: dict[str, dict[str, Any]], dirs: Sequence[str] | None) -> list[str]:
    out = []
    for i, (label, r) in enumerate(reports.items()):
        where = f" in {dirs[i]}" if dirs else ""
        out.append(f"{label}: {r.get('model')}{where}; data {r.get('data')}, "
                   f"{r[OVERALL]['n_questions']} questions, {r[OVERALL]['n']} samples")
    return out


NOTE = ("Accuracy counts errored samples as wrong; latency (per request) and tokens over successful "
        "samples only; cost is the mean completion tokens per sample.")


def render_compare_markdown(reports: dict[str, dict[str, Any]], title: str = "Comparison",
                            dirs: Sequence[str] | None = None) -> str:
    out = [f"# {title}", ""]
    out += [f"- {line}" for line in _facts(reports, dirs)]
    notes = sorted({ci_note(r) for r in reports.values()})
    out += ["", f"{NOTE} {' '.join(notes)}", ""]
    header = ["type (share)", "model", *[c.header for c in COLUMNS]]
    out.append(_md_table(header, [[r.label, r.model, *r.cells] for r in comparison_rows(reports)]))
    return "\n".join(out)


def render_compare_html(reports: dict[str, dict[str, Any]], title: str = "Comparison",
                        dirs: Sequence[str] | None = None) -> str:
    from tourney.harness.report_plots import accuracy_bars, accuracy_vs_latency, latency_bars, points_of

    e = html.escape
    facts = "".join(f"<li>{e(line)}</li>" for line in _facts(reports, dirs))
    rows = comparison_rows(reports)
    header = ["type (share)", "model", *[c.header for c in COLUMNS]]
    table = html_table(header, [[r.label, r.model, *r.cells] for r in rows], last_is_overall=False, css_class="long")
    types = union_types(reports)
    first = next(iter(reports.values()))
    labels = [type_label(first, t) if t in first["by_type"] else t for t in types] + [OVERALL]
    series = {m: [replace(p, label=lab) for p, lab in zip(points_of(r, types), labels)]
              for m, r in reports.items()}
    plots = [
        ("Accuracy per type", accuracy_bars(series, "Accuracy per type (95% CI)")),
        ("Latency per type", latency_bars(series, "Latency per type")),
        ("Accuracy against latency", accuracy_vs_latency({m: s[:-1] for m, s in series.items()},
                                                         "Accuracy against latency per type and model")),
    ]
    notes = " ".join(sorted({ci_note(r) for r in reports.values()}))
    body = (f"<ul>{facts}</ul>\n<p>{e(NOTE)} {e(notes)}</p>\n{table}\n{html_images(plots)}\n")
    return html_page(title, body)


def rich_comparison(reports: dict[str, dict[str, Any]], title: str = "Accuracy and latency per type") -> "Table":
    """The long-format comparison for the terminal, narrow enough for 80 columns: a heading row per
    type (with its share), then one indented row per model. Every cell is a rich Text, so a type or
    model name such as "[bold red]x" prints as it is, never as markup, and control characters (an
    ANSI escape in a hand-edited results.jsonl) print as visible escapes."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("type (share) / model", overflow="fold")
    for c in COLUMNS:
        table.add_column(c.short, justify="right", no_wrap=True)
    blank = [Text("") for _ in COLUMNS]
    rows = comparison_rows(reports)
    for i, r in enumerate(rows):
        if i == 0 or rows[i - 1].qtype != r.qtype:
            table.add_row(Text(printable(r.label), style="bold"), *blank)
        last_of_group = i + 1 == len(rows) or rows[i + 1].qtype != r.qtype
        table.add_row(Text("  " + printable(r.model)), *[Text(c) for c in r.cells], end_section=last_of_group)
    return table


def write_compare(reports: dict[str, dict[str, Any]], out_dir: str | Path, stem: str = "compare",
                  title: str = "Comparison", dirs: Sequence[str] | None = None) -> list[Path]:
    """Write OUT/STEM.md and OUT/STEM.html; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / f"{stem}.md", out / f"{stem}.html"
    md.write_text(render_compare_markdown(reports, title, dirs), encoding="utf-8")
    page.write_text(render_compare_html(reports, title, dirs), encoding="utf-8")
    return [md, page]
