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


@pytest.mark.slow
def test_study_report_at_1000_classes_in_chromium(driver, tmp_path):
    """Another study's data (1,000 classes, 1-based ids with gaps): the self-contained report
    opens with no console errors, its figures render, the class table sorts, and the cards
    agree with the class table."""
    from selenium.webdriver.common.by import By

    from analysis.study import load_study
    from analysis.study_report import StudyReportOptions, build_study_report
    from analysis.synthetic_study import write_synthetic_study

    csv_path, study = write_synthetic_study(tmp_path / "study", n_items=3000, n_classes=1000,
                                            seed=5)
    out = tmp_path / "report"
    rep = build_study_report(csv_path, load_study(study), out,
                             StudyReportOptions(self_contained=True, n_boot=20))
    (tmp_path / "study").rename(tmp_path / "moved")  # nothing outside the HTML is needed
    driver.get((out / "index.html").as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    imgs = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0,"
        " i.naturalWidth, i.naturalHeight])")
    assert len(imgs) == len(rep["figures"]) >= 3
    assert all(ok and 0 < h < 2000 for ok, _, h in imgs)  # summaries, not one bar per class
    rows = driver.find_elements(By.CSS_SELECTOR, "#class-table tbody tr")
    assert len(rows) == 1000
    col = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#class-table th")]
    sp = col.index("spurious")
    total = driver.execute_script(
        f"return Array.from(document.querySelectorAll('#class-table tbody tr'))"
        f".reduce((s, r) => s + parseInt(r.cells[{sp}].textContent), 0)")
    card = driver.find_element(By.ID, "card-spurious").text
    assert total == rep["summary"]["n_spurious"] and card.startswith(str(total))
    # sorting by the spurious column, descending on the second click
    header = driver.find_elements(By.CSS_SELECTOR, "#class-table th")[sp]
    header.click()
    header.click()
    first = driver.execute_script(
        f"return Array.from(document.querySelectorAll('#class-table tbody tr'))"
        f".slice(0, 50).map(r => parseInt(r.cells[{sp}].textContent))")
    assert first == sorted(first, reverse=True)
    assert first[0] == int(pd.read_csv(out / "classes.csv")["n_spurious"].max())
    assert "no feature weights" in driver.find_element(By.ID, "lacks").text
