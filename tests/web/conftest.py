"""Browser fixtures: Debian's chromium driven by Playwright, headless; the worker fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.worker.conftest import dataset_container, start_worker  # noqa: F401 - fixtures

CHROMIUM = "/usr/bin/chromium"  # the Makefile installs it (apt-get)
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def settings(azurite: Any) -> Any:
    """As the worker tests' settings (loopback webhooks allowed)."""
    from tests.conftest import fresh_settings

    return fresh_settings(azurite, webhook_allow_private=True)
