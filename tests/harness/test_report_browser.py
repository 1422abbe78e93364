"""The HTML reports in a real browser (headless Chromium): they render, every image loads, the
console stays silent, and model output that is hostile HTML stays text.

Skips when no Chromium is installed (a laptop's `make test`); CI installs one (.ci/run) and sets
TOURNEY_REQUIRE_BROWSER=1, under which a missing browser fails instead of skipping.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.browser import check_page, find_browser
from tests.harness.test_report import RUN_META, make_run, result
from tourney.harness.compare import load_reports, write_compare
from tourney.harness.report import write_reports

# If escaping failed, each of these would run and log an error the check would see.
HOSTILE = ('<script>console.error("injected script ran")</script>'
           '<img src="missing.png" onerror="console.error(\'injected handler ran\')">'
           '</pre></details><style>body{display:none}</style>')


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        if os.environ.get("TOURNEY_REQUIRE_BROWSER"):
            pytest.fail("TOURNEY_REQUIRE_BROWSER is set but no Chromium was found (apt-get install -y chromium)")
        pytest.skip("no Chromium installed (apt-get install -y chromium); the browser test needs one")
    return found


def hostile_run(tmp_path: Path, name: str, model: str) -> Path:
    types = ["one_step", "two_step", "three_step", "long_chain"]
    rows = []
    for i in range(24):
        r = result(f"test-{i:05d}", type=types[i % 4], prediction="4" if i % 3 else "5", gold="4",
                   latency_s=0.2 * (1 + i % 4))
        r["output"] = HOSTILE + " [bold red]not markup[/]"
        rows.append(r)
    run = make_run(tmp_path, rows=rows, name=name)
    (run / "run.json").write_text(json.dumps(dict(RUN_META, model=model, n_questions=24)))
    return run


def test_report_and_comparison_render_in_chromium(tmp_path: Path, browser: str) -> None:
    teacher, student = hostile_run(tmp_path, "t", "mini-teacher"), hostile_run(tmp_path, "s", "<b>mini</b>")
    write_reports(student)
    _, compare_page = write_compare(load_reports([teacher, student]), tmp_path)
    for page, title in ((student / "report.html", "Evaluation report: <b>mini</b>"),
                        (compare_page, "Comparison")):
        seen = check_page(page, browser)
        assert seen.loaded and seen.title == title, page
        assert seen.problems == [], (page, seen.problems)
        assert len(seen.images) == 3, page
        for img in seen.images:
            assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, (page, img)
        assert seen.text_length > 200  # the hostile <style> hid nothing
    assert check_page(student / "report.html", browser).details_opened == 4  # one fold of failures per type


def test_the_check_sees_a_broken_page(tmp_path: Path, browser: str) -> None:
    # The check is not vacuous: a missing image and a console error are both reported.
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><title>broken</title><link rel="icon" href="data:,"></head>'
                    '<body><img src="nowhere.png" alt="gone"><script>console.error("boom")</script></body></html>')
    seen = check_page(page, browser)
    assert seen.loaded and seen.title == "broken"
    assert seen.images[0]["naturalWidth"] == 0
    assert any("boom" in p for p in seen.problems), seen.problems
    assert any("nowhere.png" in p or "ERR_FILE_NOT_FOUND" in p for p in seen.problems), seen.problems
