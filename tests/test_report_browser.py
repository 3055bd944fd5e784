"""The demo run's report in a real browser (headless Chromium through selenium).

Loads report.html from a file: URL and checks what a reader would see: no console errors, every
figure loaded and visible, no script run by the hostile lexicon entry or sample; saves a
full-page screenshot (path printed; also copied to $WAKE2VEC_SCREENSHOT_DIR when set). Skips
when chromium, chromedriver or selenium is missing (Debian: apt-get install chromium
chromium-driver; pip install selenium).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers_report import XSS_ENTRY, XSS_SAMPLE, shared_report_run

# window.alert/confirm/prompt recorded instead of shown, installed before any page script runs
RECORD_DIALOGS = (
    "window.__dialogs = [];"
    "for (const name of ['alert', 'confirm', 'prompt']) {"
    "  window[name] = (msg) => { window.__dialogs.push(name + ':' + msg); };"
    "}"
)


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "chromium and chromedriver are not on PATH (apt-get install chromium chromium-driver)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as err:  # a broken install (driver and browser versions differ, ...)
        pytest.skip(f"headless Chromium does not start: {str(err).splitlines()[0]}")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_DIALOGS})
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def opened(browser, tmp_path_factory):
    run = shared_report_run(tmp_path_factory)
    browser.get((run / "report.html").as_uri())
    return browser, run


def test_report_loads_without_console_errors(opened):
    driver, _ = opened
    assert driver.title.startswith("wake2vec run")
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []


def test_every_figure_is_loaded_and_visible(opened):
    driver, _ = opened
    images = driver.find_elements("css selector", "img")
    assert len(images) == 7  # the curves, and a geometry and a study figure per phase
    for img in images:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", img)
        loaded = driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth;", img
        )
        assert loaded and loaded > 0, img.get_attribute("alt")
        rect = img.rect
        assert rect["width"] > 200 and rect["height"] > 100, (img.get_attribute("alt"), rect)
        assert img.is_displayed(), img.get_attribute("alt")


def test_hostile_strings_show_as_text_and_run_nothing(opened):
    driver, _ = opened
    assert driver.execute_script("return window.__dialogs;") == []
    text = driver.execute_script("return document.body.textContent;")
    assert XSS_ENTRY in text and XSS_SAMPLE in text  # shown to the reader, as text
    assert driver.execute_script("return document.scripts.length;") == 0
    sample = driver.find_element("css selector", "#generation .sample")
    assert sample.is_displayed() and "<script>" in sample.text  # the last phase, open


def test_full_page_screenshot(opened, tmp_path):
    driver, _ = opened
    width, height = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight];"
    )
    driver.set_window_size(max(1400, width), min(height + 200, 16_000))
    driver.execute_script("window.scrollTo(0, 0);")
    path = tmp_path / "report-screenshot.png"
    assert driver.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 50_000
    print(f"report screenshot: {path}")
    target = os.environ.get("WAKE2VEC_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        copy = Path(target) / path.name
        shutil.copyfile(path, copy)
        print(f"report screenshot copied to {copy}")
