"""A rendered HIT page in a real headless browser (Debian chromium + chromedriver, selenium):
URL parameters, submission to ``{turkSubmitTo}/mturk/externalSubmit``, preview mode,
validation, and the page without JavaScript."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import torch
from helpers_viz import image_run

from tasks.build import build_tasks

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="Debian chromium/chromedriver not installed"),
]
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

FIELDS = {"assignmentId", "hitId", "workerId", "hit_key", "shared", "pattern", "confidence",
          "description", "attention"}


class _Handler(SimpleHTTPRequestHandler):
    posts: list[tuple[str, list[tuple[str, str]]]]

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.posts.append((self.path, parse_qsl(body, keep_blank_values=True)))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<!DOCTYPE html><title>done</title><p id='done'>submitted</p>")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("browser")
    probe, feats, src = image_run(root)
    res = build_tasks(probe, feats, root / "tasks", source=src, fvis_steps=4, fvis_size=32,
                      n_examples=6, progress=False)
    torch.set_num_threads(n)
    posts: list = []
    handler = type("H", (_Handler,), {"posts": posts})
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(handler, directory=str(root / "tasks")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec = res.manifest[1]
    yield {"base": f"http://127.0.0.1:{server.server_port}", "posts": posts, "hit": rec}
    server.shutdown()
    server.server_close()


def _driver(javascript: bool = True):
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-dev-shm-usage", "--window-size=390,844",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    if not javascript:
        opts.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    return drv, profile


@pytest.fixture(scope="module")
def browser():
    drv, profile = _driver()
    yield drv
    drv.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _url(site, assignment="A1"):
    hit = site["hit"]
    return (f"{site['base']}/{hit['html']}?assignmentId={assignment}&hitId=H1&workerId=W1"
            f"&turkSubmitTo={site['base']}")


def _fill(drv, hit, description="a pink square in a corner"):
    drv.find_element(By.CSS_SELECTOR, "input[name=shared][value=yes]").click()
    drv.find_element(By.CSS_SELECTOR, "input[name=pattern][value=mark]").click()
    drv.find_element(By.CSS_SELECTOR, "input[name=confidence][value='4']").click()
    if description:
        drv.find_element(By.NAME, "description").send_keys(description)
    Select(drv.find_element(By.NAME, "attention")).select_by_value(
        hit["attention"]["expected"])


def _wait_post(drv, site, count):
    WebDriverWait(drv, 30).until(lambda d: len(site["posts"]) >= count)


@pytest.mark.slow
def test_submit_posts_exactly_the_expected_fields(site, browser):
    site["posts"].clear()
    browser.get(_url(site))
    assert browser.find_element(By.ID, "assignmentId").get_attribute("value") == "A1"
    _fill(browser, site["hit"])
    browser.find_element(By.ID, "submitButton").click()
    _wait_post(browser, site, 1)
    path, fields = site["posts"][0]
    assert path == "/mturk/externalSubmit"
    assert [k for k, _ in fields].count("pattern") == 1
    got = dict(fields)
    assert set(got) == FIELDS
    assert got == {"assignmentId": "A1", "hitId": "H1", "workerId": "W1",
                   "hit_key": site["hit"]["hit_key"], "shared": "yes", "pattern": "mark",
                   "confidence": "4", "description": "a pink square in a corner",
                   "attention": site["hit"]["attention"]["expected"]}


def test_preview_disables_the_form(site, browser):
    site["posts"].clear()
    browser.get(_url(site, "ASSIGNMENT_ID_NOT_AVAILABLE"))
    assert browser.find_element(By.ID, "preview-notice").is_displayed()
    assert not browser.find_element(By.ID, "submitButton").is_enabled()
    for el in browser.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        assert not el.is_enabled()


@pytest.mark.slow
def test_validation_blocks_an_incomplete_submit(site, browser):
    site["posts"].clear()
    browser.get(_url(site))
    _fill(browser, site["hit"], description="   ")
    browser.find_element(By.ID, "submitButton").click()
    box = browser.find_element(By.ID, "form-errors")
    WebDriverWait(browser, 10).until(lambda d: box.is_displayed())
    assert "4 (description)" in box.text
    assert site["posts"] == []
    assert browser.find_element(By.ID, "submitButton").is_displayed()   # still on the page
    # completing it submits
    browser.find_element(By.NAME, "description").send_keys("pink mark")
    browser.find_element(By.ID, "submitButton").click()
    _wait_post(browser, site, 1)
    assert dict(site["posts"][0][1])["description"] == "   pink mark"


@pytest.mark.slow
def test_page_works_without_javascript(site):
    drv, profile = _driver(javascript=False)
    try:
        site["posts"].clear()
        drv.get(f"{site['base']}/{site['hit']['html']}")
        # native `required` blocks an empty submit
        drv.find_element(By.ID, "submitButton").click()
        assert drv.find_element(By.NAME, "description").get_attribute("validationMessage")
        assert drv.find_elements(By.ID, "submitButton") and site["posts"] == []
        _fill(drv, site["hit"])
        drv.find_element(By.ID, "submitButton").click()
        _wait_post(drv, site, 1)
        path, fields = site["posts"][0]
        assert path == "/mturk/externalSubmit"       # the default action
        got = dict(fields)
        assert set(got) == FIELDS and got["assignmentId"] == "" and got["pattern"] == "mark"
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.slow
def test_phone_width_has_no_horizontal_scroll(site, browser):
    browser.get(_url(site))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    inner = browser.execute_script("return window.innerWidth")
    assert width <= inner
    for img in browser.find_elements(By.TAG_NAME, "img"):
        assert img.get_attribute("alt").strip()
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 0


