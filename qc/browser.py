"""Headless chromium for the dashboard's browser test and its screenshot.

Debian's `chromium` and `chromium-driver` (apt-get; `make install` installs them) are driven with
Selenium. Playwright's own browser download does not work on machines without network, and
chromedriver from the same Debian package always matches the browser.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--autoplay-policy=no-user-gesture-required", "--mute-audio")


class BrowserUnavailable(RuntimeError):
    """Chromium, chromedriver or selenium is missing; the message says which and how to install it."""


def find_browser() -> tuple[str, str]:
    """Paths of chromium and chromedriver, or BrowserUnavailable saying what is missing."""
    browser = next((p for p in CHROMIUM_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromium-driver", driver)) if not path]
    if missing:
        raise BrowserUnavailable(f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver,"
                                 " or `make install`)")
    try:
        import selenium  # noqa: F401
    except ImportError as error:
        raise BrowserUnavailable("the selenium package is not installed (pip install -e '.[test]')") from error
    return browser, driver


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[object]:
    """A headless chromium WebDriver with a fresh profile, quit and cleaned up on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = find_browser()
    profile = tempfile.mkdtemp(prefix="voxhear-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver, path: Path, width: int, max_height: int = 6000) -> Path:
    """Resize the window to the page's height (capped) and save a PNG."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(max(height, 600), max_height))
    time.sleep(0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def screenshot_run(run_dir: str | Path, out: Path, width: int = 1280, height: int = 1600) -> Path:
    """Serve the run on a free local port and save a PNG of the live dashboard (its top `height` px)."""
    from voxhear.qc.server import make_server

    find_browser()
    server = make_server(run_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with chromium(width, height) as driver:
            driver.get(f"http://127.0.0.1:{port}/")
            wait_for(driver, "return document.querySelectorAll('svg.chart').length > 0", 30)
            wait_for(driver, "var v=document.querySelector('video'); return !v || v.readyState >= 2", 30)
            out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(out))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    return out


def wait_for(driver, script: str, timeout_s: float, poll_s: float = 0.1):
    """Run `script` until it returns something truthy; raise TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in {timeout_s:.0f} s: {script}")
        time.sleep(poll_s)
