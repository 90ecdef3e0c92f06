"""The status page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
Selenium; the fixture installs them with apt-get when they are missing, and skips saying why when that
is impossible). The page is served by the web app on a socket, against real Redis and the simulators."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import requests

from tests.test_pipeline import MISSING, dbt_run, failed_run
from tests.test_statuspage import ADMIN, READ, service_env  # noqa: F401  (the fixture: tokens and secret)
from triage.app import create_app
from triage.config import load_settings

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _installed() -> str | None:
    """None when Chromium and its driver are there (installing them if need be), else why not."""
    if os.path.exists(CHROMIUM) and os.path.exists(DRIVER):
        return None
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return "chromium/chromium-driver are not installed, and apt-get as root is not available to install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"could not install chromium: {' '.join(args)}: {exc}"
        if proc.returncode != 0:
            return f"could not install chromium: {' '.join(args)}: {proc.stderr.strip()[-300:]}"
    return None if os.path.exists(DRIVER) else "apt-get installed no chromedriver"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    why = _installed()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, what: str, check, timeout: float = 15):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: check(d), message=what)


def _has_api() -> bool:
    return any(r.rule == "/api/v1/triages" for r in create_app(load_settings()).url_map.iter_rules())


def _row(driver, text: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:  # the list is redrawn every 2 s: a row found may be replaced while it is read
        return next((r for r in driver.find_elements(By.CSS_SELECTOR, "#triages tbody tr") if text in r.text), None)
    except StaleElementReferenceException:
        return None


def _row_text(driver, text: str) -> str:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        row = _row(driver, text)
        return row.text if row is not None else ""
    except StaleElementReferenceException:
        return ""


def log_in(driver, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    wait(driver, "the status page after login", lambda d: d.find_elements(By.ID, "role"))


def test_log_in_and_out(browser, service):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{service.url}/")
    browser.find_element(By.ID, "token").send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    refusal = wait(browser, "the refusal", lambda d: d.find_element(By.ID, "login-error"))
    assert refusal.text == "That token is not valid."

    log_in(browser, service.url, READ)
    assert browser.find_element(By.ID, "role").text == "read"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script can read the session
    [cookie] = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and READ not in cookie["value"]
    assert not browser.find_elements(By.ID, "pause")  # a read session has no admin controls
    notice = browser.find_element(By.ID, "notice")
    if _has_api():  # the list loaded through /ui/api: no complaint
        wait(browser, "the list loaded", lambda d: not d.find_element(By.ID, "notice").is_displayed())
    else:  # the page reached the web process through /ui/api and says what it found
        wait(browser, "the notice", lambda d: "operations API is not available" in notice.text)
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait(browser, "the login form again", lambda d: d.find_elements(By.ID, "token"))
    assert browser.get_cookies() == []


def test_a_triage_appears_live_opens_and_retries_pause(browser, service, paradime, slack):
    if not _has_api():
        pytest.skip("the operations API (/api/v1/triages, issue 10) is not in this build")
    from selenium.webdriver.common.by import By

    log_in(browser, service.url, ADMIN)
    run_id = failed_run(paradime, dbt_run(MISSING), schedule="orders_live")
    assert paradime.deliver(run_id).status_code == 202
    row = wait(browser, "the new triage in the list", lambda d: _row(d, "orders_live"), 20)  # it polls
    assert f"run {run_id}" in row.text
    service.drain(until=lambda: bool(slack.top_level()), timeout=30)  # RQ's workers: in the main thread
    wait(browser, "its verdict", lambda d: "not_retried" in _row_text(d, "orders_live"), 20)
    _row(browser, "orders_live").click()
    wait(browser, "the detail view", lambda d: d.find_element(By.ID, "detail").is_displayed())
    assert f"run {run_id}" in browser.find_element(By.ID, "detail-title").text
    wait(browser, "the timeline", lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline li"))
    assert "stg_orders" in browser.find_element(By.ID, "evidence").text
    if os.environ.get("STATUS_PAGE_SCREENSHOT"):  # how the README's screenshot is made
        browser.save_screenshot(os.environ["STATUS_PAGE_SCREENSHOT"])

    browser.find_element(By.CSS_SELECTOR, "#pause input[name=reason]").send_keys("warehouse incident")
    browser.find_element(By.CSS_SELECTOR, "#pause button[type=submit]").click()
    wait(browser, "the pause shown", lambda d: "warehouse incident" in d.find_element(By.ID, "pauses").text)
    pauses = requests.get(f"{service.url}/api/v1/retries/pauses", headers={"Authorization": f"Bearer {ADMIN}"},
                          timeout=10).json()
    assert "warehouse incident" in str(pauses)
