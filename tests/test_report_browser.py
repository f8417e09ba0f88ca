"""The HTML report in a real headless Chromium (Debian's chromium + chromedriver, driven by
selenium): the tables and plots render, nothing is fetched, the console stays clean, and the run
leaves screenshots (desktop and phone width) in $EDGEKIT_TEST_ARTIFACTS (default
/tmp/edgekit-test-artifacts)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgekit.report import build_report, write_report
from tests.report_helpers import artifact, bench, fidelity

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("EDGEKIT_TEST_ARTIFACTS", "/tmp/edgekit-test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(tmp_path: Path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_html_report_renders_in_chromium(tmp_path, browser):
    size = {"source_bytes": 4000, "artifact_bytes": 4000, "compression_ratio": 1.0}
    source = {"name": "tiny.onnx", "sha256": "2" * 64}
    arts = [
        artifact(
            tmp_path / "tiny.x86-cpu.fp32", source=source, size=size, fidelity=fidelity(True, 1.0, 99.0)
        ),
        artifact(
            tmp_path / "tiny.x86-cpu.int8",
            precision="int8",
            source=source,
            size=dict(size, artifact_bytes=1100, compression_ratio=3.6),
            fidelity=fidelity(True, 0.996, 98.7),
            depth=1,
        ),
        artifact(
            tmp_path / "tiny.arm64-cpu.int8",
            target="arm64-cpu",
            precision="int8",
            source=source,
            fidelity=fidelity(False, 0.95, 90.0),
        ),
    ]
    bench(arts, tmp_path / "results.jsonl", tmp_path / "work")
    bench(arts[:1], tmp_path / "baseline.jsonl", tmp_path / "work")
    report = build_report(
        [tmp_path / "results.jsonl"],
        baseline=[tmp_path / "baseline.jsonl"],
        title="edgekit report (browser test)",
    )
    page = write_report(report, artifacts_dir() / "report-chromium.html")

    browser.get(page.as_uri())
    tables = browser.find_elements("css selector", "table.results")
    assert len(tables) == len(report.tables) and all(t.is_displayed() for t in tables)
    rows = browser.find_elements("css selector", "table.results tbody tr:not(.reason)")
    assert len(rows) == len(report.rows)
    assert "failed verification" in browser.find_element("tag name", "body").text
    comparisons = browser.find_elements("css selector", "#baseline li")
    assert len(comparisons) == len(report.comparisons) and comparisons[0].is_displayed()
    images = browser.find_elements("css selector", "figure img")
    assert len(images) >= 2
    for image in images:
        loaded = browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
        assert loaded and loaded > 100, image.get_attribute("alt")
        assert image.size["width"] > 100 and image.size["height"] > 50
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    fetched = browser.execute_script("return performance.getEntriesByType('resource').length")
    assert fetched == 0  # nothing but the file itself

    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(height + 120, 8000))
    desktop = artifacts_dir() / "report-chromium.png"
    assert browser.save_screenshot(str(desktop)) and desktop.stat().st_size > 10_000
    browser.set_window_size(390, 844)  # a phone
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400  # the page does not scroll sideways; wide tables scroll inside their box
    phone = artifacts_dir() / "report-chromium-phone.png"
    assert browser.save_screenshot(str(phone))
    print(f"screenshots: {desktop} {phone}")
