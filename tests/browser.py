"""A headless Chromium driven by selenium, for the HTML report's tests and tools/report_page.py.

Uses the system's browser and driver (Debian's chromium and chromium-driver, which .ci/run installs), never
a downloaded one: ``browser_problem`` says why none can run here, for the tests' skip reason.
"""
from __future__ import annotations

import shutil
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def browser_problem() -> str | None:
    """None when a headless browser can be started, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not any(shutil.which(b) for b in BROWSERS):
        return "no chromium on PATH (apt-get install chromium chromium-driver; .ci/run does)"
    if not shutil.which(DRIVER):
        return "no chromedriver on PATH (apt-get install chromium-driver; .ci/run does)"
    return None


def start_browser(width: int = 1500, height: int = 1000) -> Any:
    """A headless Chromium of the given window size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(p for p in map(shutil.which, BROWSERS) if p)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=shutil.which(DRIVER)), options=options)
