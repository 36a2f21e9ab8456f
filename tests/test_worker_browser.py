"""A real headless chromium works a HIT on the local server; collect sees the answer."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from helpers_publish import FIXTURE_HITS, make_tasks_dir

from tasks.answers import read_answers
from tasks.client import make_client, resolve_endpoint
from tasks.collect import collect_answers
from tasks.publish import PublishOptions, publish_batch

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def driver():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian chromium + chromedriver not installed (/usr/bin/chromium, "
                    "/usr/bin/chromedriver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_browser_worker_submits_and_collect_sees_it(tmp_path, driver):
    live = pytest.importorskip("tasks.server.live")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait

    tasks = make_tasks_dir(tmp_path, FIXTURE_HITS[:1])
    description = 'a <b>watermark</b> & "logo" in the corner'
    with live.start_server(tmp_path / "server.sqlite") as srv:
        ep = resolve_endpoint("local", srv.url)
        client = make_client(ep, access_key_id=srv.access_key_id,
                             secret_access_key=srv.secret_access_key)
        publish_batch(tasks, client, ep, PublishOptions(assignments=1),
                      admin_auth=(srv.admin_user, srv.admin_password))
        token = srv.issue_token("BROWSER1")
        wait = WebDriverWait(driver, 30)

        driver.get(f"{srv.url}/worker/login")
        driver.find_element(By.NAME, "worker_id").send_keys("BROWSER1")
        driver.find_element(By.NAME, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "tr.hit")))
        driver.find_element(By.CSS_SELECTOR, "tr.hit button[type=submit]").click()
        wait.until(EC.frame_to_be_available_and_switch_to_it((By.ID, "hit-frame")))
        wait.until(EC.presence_of_element_located((By.ID, "mturk_form")))
        # The page's own JavaScript filled the assignment id and retargeted the form.
        aid = driver.find_element(By.ID, "assignmentId").get_attribute("value")
        assert aid and aid != "ASSIGNMENT_ID_NOT_AVAILABLE"
        action = driver.find_element(By.ID, "mturk_form").get_attribute("action")
        assert action == f"{srv.url}/mturk/externalSubmit"
        img = driver.find_element(By.CSS_SELECTOR, ".examples img")
        assert driver.execute_script("return arguments[0].naturalWidth", img) == 1  # asset
        driver.find_element(By.CSS_SELECTOR, "input[name=shared][value=yes]").click()
        driver.find_element(By.CSS_SELECTOR, "input[name=pattern][value=object]").click()
        Select(driver.find_element(By.NAME, "confidence")).select_by_value("4")
        driver.find_element(By.NAME, "description").send_keys(description)
        driver.find_element(By.CSS_SELECTOR, "input[name=attention][value=blue]").click()
        driver.find_element(By.ID, "submitButton").click()
        wait.until(lambda d: "externalSubmit" in d.execute_script("return location.href")
                   or not d.find_elements(By.ID, "mturk_form"))

        result = collect_answers(tasks, tmp_path / "answers", client, ep)
    assert result.new_assignments == 1
    df = read_answers(tmp_path / "answers")
    got = dict(zip(df["question"], df["answer"], strict=True))
    assert got == {"shared": "yes", "pattern": "object", "confidence": "4",
                   "description": description, "attention": "blue"}
    assert set(df["worker_id"]) == {"BROWSER1"} and set(df["assignment_id"]) == {aid}
    assert set(df["hit_key"]) == {FIXTURE_HITS[0][0]}
