"""The report opens from disk in headless chromium with no console errors, and text typed by a
worker (a <script> tag) is shown as text, not run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from helpers_analysis import make_manifest, simulate_answers, write_run

from analysis.report import ReportOptions, build_report

pytestmark = pytest.mark.browser
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
XSS = "<script>window.__pwned = 1; console.error('xss ran')</script><img src=x onerror=alert(1)>"


@pytest.fixture
def driver():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip(f"needs {CHROMIUM} and {DRIVER} (Debian chromium + chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_report_renders_without_errors_and_escapes(driver, tmp_path):
    from selenium.webdriver.common.by import By

    manifest = make_manifest()
    key = manifest[1]["hit_key"]
    extra = {(key, w): {"description": XSS} for w in ("W00GOOD", "W01GOOD", "W02GOOD")}
    ans = simulate_answers(manifest, n_good=4, n_spam=1, seed=2, extra=extra)
    write_run(tmp_path, ans, manifest)
    (tmp_path / "report").mkdir()
    pd.DataFrame([{"test": "image_patch", "model": "dense", "label": "class 0 · feature 12",
                   "n": 50, "flips": 30, "flip_rate": 0.6, "ci_low": 0.46, "ci_high": 0.72,
                   "mean_prob_increase": 0.4}]).to_csv(tmp_path / "report" / "counterfactual.csv",
                                                       index=False)
    (tmp_path / "report" / "counterfactual.json").write_text(json.dumps({"examples": [
        {"model": "dense", "group": "religion", "direction": "to_toxic", "before": "hi",
         "after": XSS}]}))
    build_report(tmp_path, options=ReportOptions(n_boot=20))
    driver.get((tmp_path / "report" / "index.html").as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert driver.execute_script("return window.__pwned === undefined")
    quotes = [q.text for q in driver.find_elements(By.CSS_SELECTOR, f"[id='{key}'] blockquote")]
    assert XSS in quotes
    cf = driver.find_element(By.ID, "counterfactual").text
    assert "class 0 · feature 12" in cf and XSS in cf
    # every image (figures + evidence) loaded from disk
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    assert broken == []
    assert len(driver.find_elements(By.CSS_SELECTOR, "figure img")) >= 3
    # the table of contents links to every class section
    for link in driver.find_elements(By.CSS_SELECTOR, ".toc a"):
        target = link.get_attribute("href").split("#", 1)[1]
        assert driver.find_elements(By.ID, target)
    driver.save_screenshot(str(tmp_path / "report.png"))
