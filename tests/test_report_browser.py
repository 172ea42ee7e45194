"""The report as a reader sees it: rendered by headless Chromium at 1280 px.

The full-page screenshot is written to $PROBEBENCH_SCREENSHOTS (or the test's
tmp folder) and its path printed: look at it (`pytest -s -k browser`)."""

import os
from pathlib import Path

from browser import Browser
from fake_runs import _write_png, make_run

from probebench.cli import app
from probebench.report.html import SECTIONS


def test_report_renders_in_chromium(runner, tmp_path):
    run = make_run(tmp_path / "results" / "run", seeds=(0, 1), corruptions=[("blur", [1, 2]), ("noise", [1])], n=300)
    (run / "corrections").mkdir()
    _write_png(run / "corrections" / "prober-latent_grid.png")
    _write_png(run / "realnvp-seed0-samples.png")
    result = runner.invoke(app, ["report", "run", "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    shots = Path(os.environ.get("PROBEBENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    screenshot = shots / "report-1280.png"
    with Browser() as browser:
        seen = browser.inspect(run / "report.html", width=1280, screenshot=screenshot)
    print(f"\nscreenshot of the report at 1280 px: {screenshot}")
    facts = seen.facts
    assert seen.errors == []
    assert facts["images"] == 8 and facts["brokenImages"] == []  # 4 curves, 2 heatmaps, 2 images of the run
    assert facts["pageWidth"] <= facts["viewportWidth"] and facts["overflowing"] == []
    assert facts["clippedTables"] == 0  # no table needs its scroll bar at 1280 px
    assert facts["sections"] == list(SECTIONS)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 50_000
