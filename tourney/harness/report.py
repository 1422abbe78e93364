"""Render an evaluation run as report.json, report.md and report.html (and comparison tables).

Reading the run is harness.rundir's job; this module only builds the report dict from it and
renders it. report.json is deterministic: the same results, in any line order, give the same
bytes (sorted keys, floats rounded to 6 decimals, no timestamp except `started_at` from run.json),
so two runs can be compared with `diff` and reports can be committed.
"""
from __future__ import annotations

import base64
import html
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tourney.harness.jsonl import json_safe
from tourney.harness.calibration import calibration_markdown, calibration_section, reliability_plot
from tourney.harness.metrics import summarize_results
from tourney.harness.report_content import failure_examples, ordered_types, type_order, type_share
from tourney.harness.rundir import RunDir
from tourney.harness.types import SampleResult

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
    report.update(content_of(rows))
    report.update(calibration_section(rows))  # multiple-choice runs with option scores only
    return json_safe(report, FLOAT_DIGITS)


def content_of(rows: list[SampleResult]) -> dict[str, Any]:
    """What the report shows beside the metrics: `type_order` (natural order of the types) and
    `failures` (a few wrong answers per type, with the model's text); see harness.report_content."""
    return {"type_order": type_order(rows), "failures": [f.to_dict() for f in failure_examples(rows)]}


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


def type_label(report: dict[str, Any], qtype: str) -> str:
    """A type's name with its share of the run's questions: "long_chain (10%)"."""
    share = type_share(report, qtype)
    return qtype if share is None else f"{qtype} ({share:.0%})"


def _table_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, group) per type in natural order, with its share, then overall."""
    rows = [(type_label(report, t), report["by_type"][t]) for t in ordered_types(report)]
    return [*rows, ("overall", report["overall"])]


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


def _hedged_conflicting(g: dict[str, Any]) -> list[tuple[str, str]]:
    """The multiple-choice grader's two other verdicts (harness.grading_choice), when any occurred."""
    if not (g.get("hedged") or g.get("conflicting")):
        return []
    return [("hedged / conflicting", f"{g.get('hedged', 0)} hedged (named several options: never correct), "
             f"{g.get('conflicting', 0)} conflicting (answer statements disagree: the first counts)")]


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
        *_hedged_conflicting(report["overall"]),
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
    header = ["type (share)"] + [name for name, _ in _COLUMNS]
    rows = [[t] + [fmt(g) for _, fmt in _COLUMNS] for t, g in _table_rows(report)]
    out.append(_md_table(header, rows))
    out += calibration_markdown(report)
    return "\n".join(out)


# --- HTML with embedded plots -----------------------------------------------------------------

def render_plots(report: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The run's plots as (title, PNG bytes): accuracy per type with CI bars, latency p50/p95 per
    type, accuracy against latency (one point per type), and for multiple-choice runs with option
    scores the reliability diagram (harness.calibration); see harness.report_plots."""
    from tourney.harness.report_plots import accuracy_bars, accuracy_vs_latency, latency_bars, png, points_of

    types = ordered_types(report)
    points = points_of(report, types)
    labels = [type_label(report, t) for t in types] + ["overall"]
    series = {str(report.get("model")): [replace(p, label=lab) for p, lab in zip(points, labels)]}
    clustered = (report.get("overall") or {}).get("ci_method") == "wilson-clustered"
    return [
        ("Accuracy per type", accuracy_bars(series, f"Accuracy per type ({'clustered ' if clustered else ''}"
                                                    "Wilson 95% CI)")),
        ("Latency per type", latency_bars(series, "Latency per type")),
        ("Accuracy against latency", accuracy_vs_latency(
            {k: v[:-1] for k, v in series.items()}, "Accuracy against latency per type")),
        *reliability_plot(report, png),
    ]


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
table.long th:nth-child(2), table.long td:nth-child(2) { text-align: left; }
tr.overall td { font-weight: bold; background: #f4f4f4; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1.2em; }
dt { font-weight: bold; }
dd { margin: 0; overflow-wrap: anywhere; }
img { display: block; margin: 1em 0; max-width: 100%; }
details { margin: 0.4em 0; }
summary { cursor: pointer; font-weight: bold; }
.failure { border-left: 3px solid #e45756; margin: 0.6em 0 0.6em 1em; padding-left: 0.8em; }
.failure pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f7f7f7; padding: 0.5em;
               margin: 0.3em 0; max-height: 20em; overflow-y: auto; }
"""
# An empty icon, so a browser asks no server (or file) for /favicon.ico.
HEAD_EXTRA = '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'


def html_table(header: list[str], rows: list[list[str]], last_is_overall: bool = True, css_class: str = "") -> str:
    """A table with every cell escaped; the last row styled as the overall one."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="overall"' if last_is_overall and i == len(rows) - 1 else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    cls = f' class="{e(css_class)}"' if css_class else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_images(plots: list[tuple[str, bytes]]) -> str:
    return "".join(
        f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{html.escape(title)}">'
        for title, data in plots
    )


def html_failures(report: dict[str, Any]) -> str:
    """A few wrong answers per type, folded; question, gold, answer read and the model's text, all
    escaped (model output is hostile HTML)."""
    e = html.escape
    failures = report.get("failures") or []
    if not failures:
        return "<h2>Wrong answers</h2>\n<p>None: every sample was answered correctly.</p>\n"
    by_type: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        by_type.setdefault(f["type"], []).append(f)
    parts = ["<h2>Wrong answers</h2>\n<p>The first few wrong samples of each type (by question id), "
             "with the model's text as it was generated.</p>\n"]
    for qtype, items in by_type.items():
        group = report["by_type"].get(qtype) or {}
        wrong = round((1 - (group.get("accuracy") or 0.0)) * group.get("n", 0))
        parts.append(f"<details><summary>{e(type_label(report, qtype))}: {len(items)} shown of {wrong} wrong"
                     "</summary>")
        for f in items:
            read = "no answer read" if f["prediction"] is None else f"read {f['prediction']!r}"
            error = f"; error: {f['error']}" if f.get("error") else ""
            cut = " (cut)" if f.get("truncated") else ""
            parts.append(
                f'<div class="failure"><p><b>{e(f["id"])}</b>: gold {e(repr(f["gold"]))}, {e(read)}{e(error)}</p>'
                f"<pre>{e(f['question'])}</pre><p>Model output{cut}:</p><pre>{e(f['output'])}</pre></div>")
        parts.append("</details>\n")
    return "".join(parts)


def html_page(title: str, body: str) -> str:
    """A self-contained page: inline CSS, no script, no external resource."""
    t = html.escape(title)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{HEAD_EXTRA}<title>{t}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{t}</h1>\n{body}\n</body></html>\n")


def render_html(report: dict[str, Any]) -> str:
    """report.html: self-contained (inline CSS, plots as base64 PNG), every data string escaped."""
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _header_facts(report))
    rows = [[t] + [fmt(g) for _, fmt in _COLUMNS] for t, g in _table_rows(report)]
    body = (f"<dl>{facts}</dl>\n"
            "<p>Accuracy counts errored samples as wrong; latency and token figures are over "
            f"successful samples only. {e(ci_note(report))}</p>\n"
            f"{html_table(['type (share)'] + [name for name, _ in _COLUMNS], rows)}\n"
            f"{html_images(render_plots(report))}\n{html_failures(report)}")
    return html_page(f"Evaluation report: {report.get('model')}", body)


def write_reports(run_dir: str | Path) -> dict[str, Any]:
    """Write report.json, report.md and report.html into run_dir; return the report dict."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / "report.json").write_text(report_json(report), encoding="utf-8")
    (run_dir / "report.md").write_text(render_run_markdown(report), encoding="utf-8")
    (run_dir / "report.html").write_text(render_html(report), encoding="utf-8")
    return report
