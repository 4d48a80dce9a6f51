"""Renders a run report in headless chromium and saves a screenshot of its top: the picture in the
README (docs/report.png), from the example corpus's run.

    scripts/example.sh
    .venv/bin/python scripts/report_screenshot.py example-output docs/report.png
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="an output folder with committed runs")
    parser.add_argument("png", type=Path)
    parser.add_argument("--height", type=int, default=1500, help="pixels of the page to keep")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from speech_emotion.output import open_output
    from speech_emotion.report import report_for

    with tempfile.TemporaryDirectory() as folder:
        page_path = Path(folder) / "report.html"
        page_path.write_text(report_for(open_output(args.output)))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 960, "height": args.height})
            page.goto(page_path.as_uri())
            page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(args.png))
            browser.close()
    print(f"written {args.png}")


if __name__ == "__main__":
    main()
