"""Render an evaluation run as report.json, report.md and report.html (and comparison tables).

Reading the run is harness.rundir's job; this module only builds the report dict from it and
renders it. report.json is deterministic: the same results, in any line order, give the same
bytes (sorted keys, floats rounded to 6 decimals, no timestamp except `started_at` from run.json),
so two runs can be compared with `diff` and reports can be committed.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tourney.harness.jsonl import json_safe
from tourney.harness.metrics import summarize_results
from tourney.harness.rundir import RunDir

if TYPE_CHECKING:
    from rich.table import Table

# run.json keys copied into the report as they are; a missing key becomes null.
META_KEYS = (
    "model", "generation", "data", "data_sha256", "template", "package_version", "started_at",
)
FLOAT_DIGITS = 6


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """run.json metadata merged with the metrics of results.jsonl, as report.json holds it.

    Keys: the META_KEYS copied from run.json, `n_questions_expected` (run.json's `n_questions`,
    so an unfinished run shows as one), `overall` and `by_type` (see harness.metrics.GroupSummary).
    """
    run = RunDir(run_dir)
    meta = run.meta().model_dump(mode="json", exclude_unset=True)
    rows = run.rows()
    report: dict[str, Any] = {key: meta.get(key) for key in META_KEYS}
    report["n_questions_expected"] = meta.get("n_questions")
    report.update(summarize_results(rows).to_dict())
    return json_safe(report, FLOAT_DIGITS)


def report_json(report: dict[str, Any]) -> str:
    """The canonical text of report.json: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# --- formatting shared by the Markdown, HTML and comparison tables ---------------------------

def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _acc_ci(g: dict[str, Any]) -> str:
    low, high = g["ci95"]
    if g["accuracy"] is None or low is None:
        return "n/a"
    return f"{g['accuracy']:.3f} [{low:.3f}, {high:.3f}]"


# (column header, cell formatter) for the per-run tables.
_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("n", lambda g: str(g["n"])),
    ("questions", lambda g: str(g["n_questions"])),
    ("accuracy [95% CI]", _acc_ci),
    ("majority acc", lambda g: _num(g["majority_accuracy"])),
    ("p50 s", lambda g: _num(g["latency_p50_s"])),
    ("p95 s", lambda g: _num(g["latency_p95_s"])),
    ("TTFT p50 s", lambda g: _num(g["ttft_p50_s"])),
    ("tokens/s", lambda g: _num(g["tokens_per_s"], "{:.1f}")),
    ("errors", lambda g: str(g["errors"])),
]


def _table_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [*report["by_type"].items(), ("overall", report["overall"])]


def _md_cell(text: str) -> str:
    # Type names come from data files; a "|" would split the cell.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _unparsed(g: dict[str, Any]) -> str:
    answered = g["n"] - g["errors"]
    return f"{g.get('unparsed', 0)} of {answered} answered samples had no answer the grader could read"


def _header_facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    gen = report.get("generation") or {}
    if isinstance(gen, dict):
        settings = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(gen.items()))
    else:
        settings = str(gen)
    sha = report.get("data_sha256")
    done, expected = report["overall"]["n_questions"], report.get("n_questions_expected")
    if expected in (None, done):
        questions = str(done)
    else:
        questions = f"{done} of {expected} (incomplete run)"
    return [
        ("model", str(report.get("model"))),
        ("data", f"{report.get('data')}" + (f" (sha256 {str(sha)[:12]})" if sha else "")),
        ("template", str(report.get("template"))),
        ("settings", settings or "n/a"),
        ("questions", questions),
        ("unparsed answers", _unparsed(report["overall"])),
        ("started", str(report.get("started_at"))),
        ("tourney", str(report.get("package_version"))),
    ]


def ci_note(report: dict[str, Any]) -> str:
    """How the intervals were computed: over samples (one per question) or clustered by question."""
    if (report.get("overall") or {}).get("ci_method") == "wilson-clustered":
        return ("CI: Wilson 95% at the effective sample size, clustered by question "
                "(samples of one question are not independent).")
    return "CI: Wilson 95%."


def render_run_markdown(report: dict[str, Any]) -> str:
    """report.md: a header with the model, data and settings, then one table row per type."""
    out = [f"# Evaluation report: {report.get('model')}", ""]
    out += [f"- **{k}**: {_md_cell(v)}" for k, v in _header_facts(report)]
    out += ["", "Accuracy counts errored samples as wrong; latency and token figures are over "
                f"successful samples only. {ci_note(report)}", ""]
    header = ["type"] + [name for name, _ in _COLUMNS]
    rows = [[t] + [fmt(g) for _, fmt in _COLUMNS] for t, g in _table_rows(report)]
    out.append(_md_table(header, rows))
    return "\n".join(out)


# --- HTML with embedded plots -----------------------------------------------------------------

def render_plots(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Two PNG plots (title, bytes): accuracy per type with CI bars, and latency p50/p95 per type.

    matplotlib is imported here because importing it costs about a second. The object API with
    an explicit Agg canvas is used instead of pyplot: no global figure state, no backend switch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = _table_rows(report)
    names = [t for t, _ in rows]
    xs = list(range(len(rows)))
    colors = ["#4c78a8"] * (len(rows) - 1) + ["#72b7b2"]  # overall in a different colour
    # Many type names would overlap on the axis: slant them.
    tick_style: dict[str, Any] = {"rotation": 30, "ha": "right"} if len(rows) > 5 else {}

    def png(fig: Figure) -> bytes:
        buf = io.BytesIO()
        FigureCanvasAgg(fig)
        # No "Software" metadata, so the bytes do not change with the matplotlib version.
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        return buf.getvalue()

    width = max(4.0, 1.0 + 0.9 * len(rows))
    fig = Figure(figsize=(width, 3.2), layout="constrained")
    ax = fig.add_subplot()
    acc = [g["accuracy"] if g["accuracy"] is not None else 0.0 for _, g in rows]
    # An empty group (ci95 null) draws as a zero bar without error bars.
    cis = [g["ci95"] if g["ci95"][0] is not None else [a, a] for a, (_, g) in zip(acc, rows)]
    lo_err = [a - ci[0] for a, ci in zip(acc, cis)]
    hi_err = [ci[1] - a for a, ci in zip(acc, cis)]
    ax.bar(xs, acc, color=colors, yerr=[lo_err, hi_err], capsize=4)
    ax.set_xticks(xs, names, **tick_style)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    clustered = (report.get("overall") or {}).get("ci_method") == "wilson-clustered"
    ax.set_title(f"Accuracy per type ({'clustered ' if clustered else ''}Wilson 95% CI)")
    accuracy_png = png(fig)

    fig = Figure(figsize=(width, 3.2), layout="constrained")
    ax = fig.add_subplot()
    p50 = [g["latency_p50_s"] or 0.0 for _, g in rows]
    p95 = [g["latency_p95_s"] or 0.0 for _, g in rows]
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#4c78a8")
    ax.bar([x + 0.2 for x in xs], p95, width=0.4, label="p95", color="#f58518")
    ax.set_xticks(xs, names, **tick_style)
    ax.set_ylabel("latency (s)")
    ax.set_title("Latency per type")
    ax.legend()
    latency_png = png(fig)
    return [("Accuracy per type", accuracy_png), ("Latency per type", latency_png)]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr:last-child td { font-weight: bold; background: #f4f4f4; }
dt { font-weight: bold; float: left; clear: left; width: 7em; }
dd { margin-left: 8em; }
img { display: block; margin: 1em 0; max-width: 100%; }
"""


def render_html(report: dict[str, Any]) -> str:
    """report.html: self-contained (inline CSS, plots as base64 PNG), every data string escaped."""
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _header_facts(report))
    head = "".join(f"<th>{e(h)}</th>" for h in ["type"] + [name for name, _ in _COLUMNS])
    body = "".join(
        f"<tr><td>{e(t)}</td>" + "".join(f"<td>{e(fmt(g))}</td>" for _, fmt in _COLUMNS) + "</tr>"
        for t, g in _table_rows(report)
    )
    plots = "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"'
        f' alt="{e(title)}">'
        for title, data in render_plots(report)
    )
    title = e(f"Evaluation report: {report.get('model')}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>\n<h1>{title}</h1>\n<dl>{facts}</dl>\n"
        "<p>Accuracy counts errored samples as wrong; latency and token figures are over "
        f"successful samples only. {e(ci_note(report))}</p>\n"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
        f"{plots}\n</body></html>\n"
    )


def write_reports(run_dir: str | Path) -> dict[str, Any]:
    """Write report.json, report.md and report.html into run_dir; return the report dict."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / "report.json").write_text(report_json(report), encoding="utf-8")
    (run_dir / "report.md").write_text(render_run_markdown(report), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


# --- several models side by side --------------------------------------------------------------

def _comparison(reports: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per type (union over reports, sorted) then overall; per model an
    accuracy [CI] column and a p50 latency column. A type a model was not run on shows "-"."""
    types = sorted({t for r in reports.values() for t in r["by_type"]})
    header = ["type"]
    for label in reports:
        header += [f"{label} acc [95% CI]", f"{label} p50 s"]
    rows = []
    for t in [*types, "overall"]:
        row = [t]
        for r in reports.values():
            g = r["overall"] if t == "overall" else r["by_type"].get(t)
            row += [_acc_ci(g), _num(g["latency_p50_s"])] if g else ["-", "-"]
        rows.append(row)
    return header, rows


def render_comparison_table(reports: dict[str, dict[str, Any]]) -> str:
    """Markdown table of several reports (label -> build_report() dict) side by side per type."""
    header, rows = _comparison(reports)
    return _md_table(header, rows)


def rich_comparison(reports: dict[str, dict[str, Any]]) -> "Table":
    """The same comparison as a rich Table, for the terminal."""
    from rich.table import Table

    header, rows = _comparison(reports)
    table = Table(title="Accuracy and latency per type")
    table.add_column(header[0], style="bold")
    for h in header[1:]:
        table.add_column(h, justify="right")
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=(i == len(rows) - 2))  # a rule above "overall"
    return table
