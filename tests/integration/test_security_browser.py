"""The Content-Security-Policy in a real browser: headless Chromium refuses to show the API docs
(or any response of ours) inside a page of another site, and the dashboard and the docs page,
served by a real HTTP server on 127.0.0.1, run without a single policy violation."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from tests.conftest import API_KEY
from tests.integration.test_browser import CHROMIUM, FLAGS

FRAMING_REFUSED = (
    "violates the following Content Security Policy directive: \"frame-ancestors 'none'\""
)
ANY_VIOLATION = "Content Security Policy"


@contextmanager
def serve(wsgi_app: Callable[..., Any]) -> Iterator[str]:
    """`wsgi_app` on a real threaded HTTP server on a free port; yields its base URL."""
    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    with serve(app) as address:
        yield address


def browse(url: str, profile: Path) -> tuple[str, str]:
    """(DOM, console log) of `url` in Chromium, after the page's scripts ran."""
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    done = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = "\n".join(line for line in done.stderr.splitlines() if ":CONSOLE" in line)
    return done.stdout, console


def test_another_site_cannot_frame_the_docs(server: str, tmp_path: Path) -> None:
    # The dashboard's pages send the same headers (test_security); framed here, its Basic
    # challenge would wait for a login prompt that a headless browser never answers.
    def other_site(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert Request(environ).path == "/"
        page = (
            "<!doctype html><title>other site</title><h1>other site</h1>"
            f'<iframe src="http://{server}/api/docs"></iframe>'
            f'<iframe src="http://{server}/api/openapi.json"></iframe>'
        )
        return Response(page, mimetype="text/html")(environ, start_response)

    with serve(other_site) as other:
        dom, console = browse(f"http://{other}/", tmp_path / "profile")

    assert "<h1>other site</h1>" in dom
    assert console.count(FRAMING_REFUSED) == 2, console


@pytest.mark.parametrize("path", ["/rq/", "/api/docs"])
def test_the_pages_run_without_a_policy_violation(server: str, tmp_path: Path, path: str) -> None:
    # The docs need no key; a page whose URL holds credentials cannot fetch() relative URLs.
    credentials = f"operator:{API_KEY}@" if path == "/rq/" else ""
    dom, console = browse(f"http://{credentials}{server}{path}", tmp_path / "profile")

    # The page was built by its scripts (the dashboard's queue rows come from an XHR and an
    # underscore template, the docs' operations from Swagger UI reading openapi.json), and
    # nothing it loaded or ran was refused.
    built = '<tr data-role="queue">' if path == "/rq/" else 'class="opblock-summary-path"'
    assert built in dom
    assert ANY_VIOLATION not in console, console
