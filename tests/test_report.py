"""The run report: one HTML file that needs no network, shows the runs, where time went, the
errors with examples, the labels and emotion over time; it renders in a real browser without a
console error or a request; and progress lines while a run goes."""

from __future__ import annotations

import logging
import re
import shutil
import time

import pytest

from speech_emotion.progress import Progress, progress_line
from speech_emotion.report import build_report
from speech_emotion.schema import OUTPUT_SCHEMA

from .factories import clip_rows, error_row, table
from .test_ledger import record

STAGES = {
    "decode": {"busy_s": 12.0, "decode_s": 2.0, "segment_s": 1.0, "features_s": 8.0,
               "fetch_wait_s": 0.5, "audio_s": 600.0, "clips": 120, "span_s": 14.0},
    "models": {"busy_s": 30.0, "whisper_s": 20.0, "emotion_s": 9.0, "audio_s": 590.0,
               "clips": 120, "span_s": 40.0},
    "write": {"busy_s": 1.0, "rows_out": 3, "span_s": 1.0},
}  # fmt: skip


def rows():
    made = []
    for n, emotion in enumerate(["angry", "neutral", "happy"]):
        for row in clip_rows(f"call-{n}", 4, channels=[0, 1], language="en"):
            i = row["segment_index"]
            row.update(
                emotion=emotion if i % 2 else "sad",
                emotion_score=0.5 + 0.1 * i,
                start_s=5.0 * i,
                end_s=5.0 * i + 4.0,
                duration_s=4.0,
                recording_duration_s=40.0 + n,
            )
            made.append(row)
    made += [
        error_row("<script>alert(1)</script>", "undecodable", audio="s3://b/x.wav"),
        error_row("gone", "missing_object", audio="s3://b/gone.wav"),
    ]
    made += clip_rows("short", language="es", emotion="happy", emotion_score=0.9, duration_s=2.5)
    return table(OUTPUT_SCHEMA, made)


def in_files(rows, per_file: int):
    """A scan of ``rows`` as the job's files would give them, ``per_file`` rows a file."""
    return lambda columns: (
        rows.slice(at, per_file).select(columns) for at in range(0, len(rows), per_file)
    )


def report(per_file: int = 1000) -> str:
    run = record("r1", stages=STAGES, options={"resources": {"num_gpus_per_worker": 0}})
    return build_report([run], in_files(rows(), per_file))


def test_the_report_is_one_file_that_loads_nothing_from_the_network():
    html = report()
    assert 0.5e6 < len(html) < 2.5e6  # BokehJS inlined, nothing else of size
    loads = re.findall(r"<(?:script|link|img)[^>]+(?:src|href)=[\"']([^\"']+)", html)
    assert loads == []


def test_the_report_shows_the_runs_their_time_errors_labels_and_timelines():
    html = report()
    for section in (
        "The runs at a glance",
        "Where time went",
        "Errors",
        "Labels",
        "Emotion over time",
    ):
        assert f"<h2>{section}</h2>" in html
    assert "undecodable (1 rows)" in html and "s3://b/gone.wav" in html
    # Row values are text, never markup.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    sneaky = build_report([record("r1", manifest="<b>m</b>.jsonl")], in_files(rows(), 1000))
    assert "of &lt;b&gt;m&lt;/b&gt;.jsonl</h1>" in sneaky
    assert "busy 75% of the time" in html  # 30 busy s over a 40 s span, one CPU model worker
    for name in ("time", "errors", "emotions", "by-language", "by-channel", "timeline-0"):
        assert f'"name":"{name}"' in html.replace(" ", "")


def test_files_of_any_size_give_the_same_report():
    # Every aggregate is built from partial ones, file by file; a recording may span two files.
    def figures(html: str) -> str:
        # Bokeh names each object and document anew every time.
        return re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|\bp\d{3,}\b", "", html)

    assert figures(report(per_file=1000)) == figures(report(per_file=7))


def test_a_run_without_segments_or_errors_has_no_such_sections():
    whole = table(OUTPUT_SCHEMA, clip_rows("a", emotion="sad", emotion_score=0.7, duration_s=2.0))
    html = build_report([record("r1")], in_files(whole, 10))
    assert "<h2>Labels</h2>" in html and "No error rows." in html
    assert "Emotion over time" not in html


def test_a_report_of_nothing_still_opens():
    html = build_report([], lambda columns: iter([]))
    assert "No committed runs" in html and "Nothing to plot" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow  # starts a browser
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (scripts/setup.sh installs it where apt-get can)",
)
def test_the_report_renders_in_a_real_browser_without_errors_or_requests(tmp_path):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(report())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        problems, requests = [], []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=15000)
        page.wait_for_timeout(500)
        drawn = page.evaluate(
            """() => Bokeh.documents[0].roots().map(root => {
                   const view = Bokeh.index.get_one(root);
                   return view && view.canvas_view ? view.canvas_view.bbox.width : 0;
               })"""
        )
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert problems == []
    assert requests == [path.as_uri()]
    assert len(drawn) >= 8 and all(width > 100 for width in drawn)


def test_a_progress_line_says_what_is_done_and_what_is_left():
    models = {"recordings": 25.0, "clips": 300, "audio_s": 7200.0, "errors": 2}
    line = progress_line(models, total=100, elapsed_s=600.0)
    assert line == (
        "progress: 25/100 recordings, 300 rows, 2.00 h of audio, 12.0 audio-s/s, 2 errors, "
        "about 30 min left"
    )
    assert "left" not in progress_line({"recordings": 100.0}, total=100, elapsed_s=60.0)


def test_progress_is_logged_at_a_steady_interval(caplog):
    done = {"recordings": 0.0}

    def read():
        done["recordings"] += 1
        return dict(done)

    with (
        caplog.at_level(logging.INFO, logger="speech_emotion.progress"),
        Progress(read, total=10, interval_s=0.05),
    ):
        time.sleep(0.3)
    lines = [r.message for r in caplog.records if r.message.startswith("progress:")]
    assert 3 <= len(lines) <= 7
    assert lines[0].startswith("progress: 1/10 recordings")
