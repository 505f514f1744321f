"""The golden ``full`` case loaded into a warehouse, and a real browser, for the tests of
what people see: the report and the delivered call list."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.lake.extract import extract_months
from pipeline.lake.partition import Manifest
from pipeline.months import months_between
from pipeline.run import backfill

from golden import GOLDEN
from support import csv_config

FULL_START, FULL_LAST = date(2025, 1, 1), date(2026, 3, 1)
# the report and the call list of M read M-5 .. M: load those, extract the rest
FULL_LOADED = date(2025, 10, 1)


def load_full_case(folder: Path, **sections) -> Config:
    """Extract every month of the golden ``full`` case and load 2025-10 .. 2026-03."""
    cfg = csv_config(
        folder,
        GOLDEN / "full" / "payments.csv",
        timezone="Europe/Oslo",
        history_start="2025-01",
        **sections,
    )
    for month, outcome in extract_months(cfg, months_between(FULL_START, FULL_LAST)):
        assert isinstance(outcome, Manifest), (month, outcome)
    results = backfill.backfill(cfg, FULL_LOADED, FULL_LAST, extract=False)
    assert {r.status for r in results} == {"loaded"}, [r.error for r in results]
    return cfg


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_path() -> str:
    """Debian's chromium (``make test`` installs it); missing: skipped on a laptop, a
    failure in CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (make test installs it: apt-get install chromium)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def browser_page(width: int = 1300, height: int = 900) -> Iterator:
    """A page of headless Chromium (driven by Playwright over CDP, no downloaded browser)
    that records console errors, page errors and every request it makes."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.problems, page.warnings, page.requests = [], [], []

            def console(message) -> None:
                if message.type == "error":
                    page.problems.append(f"console error: {message.text}")
                elif message.type == "warning":
                    page.warnings.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))

            def guard(route) -> None:
                page.requests.append(route.request.url)
                if route.request.url.startswith(("file:", "data:", "blob:", "about:")):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", guard)
            yield page
        finally:
            browser.close()


CUSTOMERS_CSV = (
    "id,display_name,account_manager,region\n"
    "k00013,Fjord Bakery AS,anna@example.com,west\n"
    "k00032,Nordlys Tools,ben@example.com,north\n"
    "k00005,Havn Logistics,,south\n"
)
CUSTOMER_COLUMNS = {"customer_id": "id", "name": "display_name", "owner_email": "account_manager"}


def load_full_case_with_customers(folder: Path) -> Config:
    (folder / "customers.csv").write_text(CUSTOMERS_CSV)
    customers = {"kind": "csv", "path": str(folder / "customers.csv"), "columns": CUSTOMER_COLUMNS}
    return load_full_case(folder, customers=customers)


def reconfigured(cfg: Config, folder: Path, **sections) -> Config:
    """A configuration of the same source, lake, warehouse and customers with other
    sections (e.g. its own runs.root and [notify]), written in ``folder``."""
    from pipeline.config import load_config

    from support import write_config

    base = {
        "source": {"kind": "csv", "path": cfg.source.path},
        "business": {
            "timezone": cfg.business.timezone,
            "currency": cfg.business.currency,
            "history_start": cfg.business.history_start.strftime("%Y-%m"),
        },
        "lake": {"root": str(cfg.lake.root)},
        "warehouse": {"url": cfg.warehouse.url},
        "runs": {"root": str(folder / "runs")},
    }
    if cfg.customers is not None:
        base["customers"] = cfg.customers.model_dump(exclude_none=True)
    for name, values in sections.items():
        base[name] = base.get(name, {}) | values
    return load_config(write_config(folder, base))
