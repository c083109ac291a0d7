"""The real browser the page tests drive: Debian's chromium, through Playwright.

``make test`` installs both; under ``CI=true`` a missing browser fails the
tests that need it (it is a broken set-up, not an optional extra), elsewhere
it skips them with what to install.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

CHROMIUM = os.environ.get("CLUSTERLENS_CHROMIUM", "/usr/bin/chromium")


def chromium() -> str:
    """The browser's path (at module level or in a test)."""
    if os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":  # CI installs it: missing is a bug
        pytest.fail(
            f"no chromium at {CHROMIUM}: make test installs it with apt-get",
            pytrace=False,
        )
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium, or set "
        "CLUSTERLENS_CHROMIUM)",
        allow_module_level=True,
    )


def sync_api() -> Any:
    """Playwright's synchronous API (skips where Playwright is missing)."""
    return pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install playwright)",
    )
