"""Open a viewer page in headless Chromium (Debian's ``chromium``) through Playwright.

Used by the viewer's browser tests, its benchmark and the screenshot script. Playwright drives the
system's Chromium (``executable_path``), so nothing is downloaded; the flags keep Chromium off the
network (no background requests, component updates or sync) in a fresh profile Playwright makes.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")
CHROMIUM_VARIABLE = "AGENTR1_CHROMIUM"


def find_chromium() -> str | None:
    """``$AGENTR1_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on ``PATH``."""
    return os.environ.get(CHROMIUM_VARIABLE) or shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def open_page(path: str | os.PathLike[str], *, width: int = 1280, height: int = 900,
              fragment: str = "", timeout_s: float = 120.0, bypass_csp: bool = False) -> Iterator[Any]:
    """A Playwright ``Page`` with ``path`` loaded and the viewer's first render done.

    The page gets ``page.load_seconds`` (from the navigation's start to the viewer's first render, as
    the page measures it), ``page.wall_seconds`` (the same seen from here) and ``page.errors``
    (uncaught errors and console messages). ``bypass_csp`` switches the page's Content-Security-Policy
    off, to show that its rendering alone keeps model text inert.
    """
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium (or set $AGENTR1_CHROMIUM)")
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS[1:]),
                                             timeout=timeout_s * 1000)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, bypass_csp=bypass_csp)
            page.set_default_timeout(timeout_s * 1000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on("console", lambda message: errors.append(f"console.{message.type}: {message.text}"))
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("html[data-ready='1']", state="attached")
            page.wall_seconds = time.perf_counter() - started
            # performance.now() counts from the navigation's start: reading the file, parsing, first render
            page.load_seconds = float(page.evaluate("Number(document.documentElement.dataset.readyAt)")) / 1000.0
            page.errors = errors
            yield page
        finally:
            browser.close()
