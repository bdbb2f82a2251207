#!/usr/bin/env python3
"""Drives the dashboard of `nixarr-units serve` (src/api/dashboard.html) in
headless Chromium through Selenium, for tests/e2e/api_browser.rs.

    python3 dashboard.py URL TOKEN

It opens the page, types the token once into its form, waits for the rows,
then takes commands on stdin, one a line, and answers each with one line on
stdout, `OK <json>` or `ERR <message>` (after an ERR it exits 1):

    rows                      every row: name, state, health, reason, pid, links
    click NAME VERB           click VERB's button in NAME's row (start, stop, restart)
    wait NAME STATE [NOTPID]  wait until NAME's row shows STATE (and a PID other
                              than NOTPID), with no error shown; answers the row
    message TEXT...           wait until the page's message line shows TEXT
    same-page                 the page was never reloaded or left since it opened
    screenshot PATH           save a PNG of the page
    quit

Every wait is bounded (NIXARR_E2E_WAIT seconds, default 60); nothing
sleeps for a fixed time. Debian's chromium and chromedriver are used as
installed (no driver download).
"""

import json
import os
import secrets
import sys
import tempfile

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT = float(os.environ.get("NIXARR_E2E_WAIT", "60"))

# Each row as the page shows it: the visible text of its cells.
ROWS_JS = """
return Array.from(document.querySelectorAll('#rows tr')).map((tr) => {
  const cell = (label) => tr.querySelector('td[data-label="' + label + '"]');
  const health = cell('Health');
  const reason = health && health.querySelector('.reason');
  return {
    name: cell('Service').textContent,
    state: cell('State').textContent,
    health: health.firstChild ? health.firstChild.textContent : '',
    reason: reason ? reason.textContent : null,
    pid: tr.dataset.pid,
    restarts: cell('Restarts').textContent,
    links: Array.from(cell('Ports').querySelectorAll('a')).map((a) => a.href),
    buttons: Array.from(tr.querySelectorAll('button')).map((b) => b.textContent),
  };
});
"""


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,720",
        "--user-data-dir=" + tempfile.mkdtemp(prefix="nixarr-e2e-chromium-"),
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def rows(driver):
    return {r["name"]: r for r in driver.execute_script(ROWS_JS)}


def message(driver):
    return driver.find_element(By.ID, "msg").text


def until(driver, what, cond):
    """Wait for cond(driver) to be truthy; its value, or an error naming what
    was awaited, the last rows and the page's message."""
    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(cond)
    except TimeoutException:
        raise RuntimeError(
            f"timed out after {WAIT:.0f} s waiting for {what}; rows: {json.dumps(rows(driver))}; "
            f"message: {message(driver)!r}"
        ) from None


def console(driver):
    try:
        return [e["message"] for e in driver.get_log("browser")]
    except Exception:  # the log is a diagnostic only
        return []


class Page:
    def __init__(self, driver, url):
        self.driver = driver
        self.url = url
        self.marker = secrets.token_hex(8)

    def open(self, token):
        d = self.driver
        d.get(self.url)
        # Set on the page's window: a reload or a navigation loses it.
        d.execute_script("window.nixarrE2eMarker = arguments[0];", self.marker)
        until(d, "the token prompt", lambda d: "token" in message(d).lower())
        field = d.find_element(By.ID, "token")
        field.send_keys(token)
        d.find_element(By.CSS_SELECTOR, "#auth button[type=submit]").click()
        until(d, "the rows", lambda d: rows(d) and not message(d))

    def cmd_rows(self):
        return rows(self.driver)

    def cmd_click(self, name, verb):
        d = self.driver
        row = d.find_element(By.ID, "row-" + name)
        button = row.find_element(By.CSS_SELECTOR, "button." + verb)
        button.click()
        return {"clicked": f"{name} {verb}"}

    def cmd_wait(self, name, state, notpid=None):
        def shown(d):
            r = rows(d).get(name)
            if r is None or r["state"] != state or message(d):
                return None
            if notpid is not None and r["pid"] in ("", "0", notpid):
                return None
            return r

        return until(self.driver, f"{name} shown {state}" + (f" with a PID other than {notpid}" if notpid else ""), shown)

    def cmd_message(self, *words):
        text = " ".join(words)
        return {"message": until(self.driver, f"the message {text!r}", lambda d: text in message(d) and message(d))}

    def cmd_same_page(self):
        d = self.driver
        marker = d.execute_script("return window.nixarrE2eMarker || null;")
        navigations = d.execute_script("return performance.getEntriesByType('navigation').length;")
        if marker != self.marker or d.current_url != self.url or navigations != 1:
            raise RuntimeError(
                f"the page was reloaded or left: marker {marker!r} (set {self.marker!r}), "
                f"url {d.current_url!r}, navigations {navigations}"
            )
        return {"marker": marker, "url": d.current_url}

    def cmd_screenshot(self, path):
        if not self.driver.save_screenshot(path):
            raise RuntimeError(f"could not save a screenshot to {path}")
        return {"screenshot": path}


def main():
    url, token = sys.argv[1], sys.argv[2]
    driver = browser()
    page = Page(driver, url)
    try:
        page.open(token)
        print("OK " + json.dumps({"opened": url}), flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                break
            handler = getattr(page, "cmd_" + words[0].replace("-", "_"), None)
            if handler is None:
                raise RuntimeError(f"unknown command {line.strip()!r}")
            print("OK " + json.dumps(handler(*words[1:])), flush=True)
    except Exception as e:  # reported to the test, with the page's console
        failshot = os.environ.get("NIXARR_E2E_FAILSHOT")
        if failshot:
            driver.save_screenshot(failshot)
        print(f"ERR {type(e).__name__}: {e}; browser console: {json.dumps(console(driver))}", flush=True)
        return 1
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
