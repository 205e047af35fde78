"""A real browser: headless Chromium (Debian's `chromium`) opens the dashboard and the API docs
(Swagger UI) served by a real HTTP server on 127.0.0.1, and the DOM its scripts build shows the
project's queues and routes.

Chromium takes the API key from the URL (`http://user:KEY@host/rq/`), answers the 401 challenge
with it, and reuses it for the dashboard's XHRs, which load the queues after the page.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import API_KEY
from workers.jobs import INBOUND, QUEUES

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
    "--dns-prefetch-disable",
    # Loopback only: no name resolves, and anything not on 127.0.0.1 goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=5000",  # let the page's XHRs finish before the DOM is dumped
]
QUEUE_ROW = re.compile(r'<tr data-role="queue">\s*<td>([^<]+)</td>')


def noop() -> None:
    """A job function for filling a queue; never run."""


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app on a real threaded HTTP server on a free port; yields its host:port."""
    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


def dump_dom(url: str, profile: Path) -> str:
    """The DOM Chromium builds for `url`, after its scripts ran."""
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_dashboard_shows_the_project_queues_in_a_browser(
    server: str, tmp_path: Path, redis_conn: Redis
) -> None:
    for _ in range(2):
        Queue(INBOUND, connection=redis_conn).enqueue(noop)

    dom = dump_dom(f"http://operator:{API_KEY}@{server}/rq/", tmp_path / "profile")

    rows = QUEUE_ROW.findall(dom)
    assert sorted(rows) == sorted(QUEUES), dom[-3000:]
    inbound_row = re.search(rf'<td>{INBOUND}</td>\s*<td class="narrow">\s*<a [^>]*>(\d+)</a>', dom)
    assert inbound_row is not None and inbound_row.group(1) == "2"


def test_the_dashboard_stays_closed_to_a_browser_without_the_key(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        dom = dump_dom(f"http://{server}/rq/", tmp_path / "profile")

    assert not QUEUE_ROW.search(dom) and "RQ dashboard" not in dom
    answers = [r.getMessage() for r in caplog.records if "GET /rq/ " in r.getMessage()]
    assert answers and all('" 401 ' in answer for answer in answers)


def test_the_api_docs_page_lists_every_route_in_a_browser(
    app: Flask, server: str, tmp_path: Path
) -> None:
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()

    dom = dump_dom(f"http://{server}/api/docs", tmp_path / "profile")

    # Swagger UI (served by Apex) fetched the document and drew one block per operation.
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert shown == set(spec["paths"])
    assert "/api/jobs/{job_id}" in shown and "/api/webhooks/{sub_id}/portal-link" in shown
    assert "Apex Webhooks" in dom
