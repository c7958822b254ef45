from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def live_server_without_media_handler():
    """MEDIA_URL is None on purpose (media leaves only through permission-checked views), but Django's live
    server wraps the app in a media-serving handler that fails on None. Run it without that handler, which
    also keeps the browser tests honest: no scan is reachable by a plain URL."""
    from django.test import testcases

    original = testcases._MediaFilesHandler
    testcases._MediaFilesHandler = lambda application: application
    yield
    testcases._MediaFilesHandler = original


# The browser and its CSP listener, defined with the first browser test, for every test in this folder.
from tests.browser.test_case_workflow import (  # noqa: E402, F401
    browser_page,
    csp_violations,
    screenshots_folder,
)
