"""Security headers on every response: no framing by other sites, no MIME sniffing, and a
Content-Security-Policy that lets a page run only the scripts it was served with.

A page's inline scripts are allowed by their SHA-256 hashes, read from the HTML being sent, so
a script that a page's own scripts later write into the DOM (an injected `<script>` or an
`onerror=` attribute) never runs. That trusts what the server renders; the templates (ours and
rq-dashboard's) autoescape what they interpolate. rq-dashboard also needs 'unsafe-eval' (its row
templates are compiled by underscore's `_.template`, which uses `new Function`); nothing else
does. Inline styles are allowed everywhere: rq-dashboard sets `style` attributes in its markup.

The console, the portal pages, the start page and the API docs load scripts from this site only
(htmx, the console's own script, Swagger UI).
"""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Flask, Response, request

from apex.api.dashboard import PREFIX as DASHBOARD_PREFIX

# An inline script: a <script> element without a src attribute, and its text exactly as sent.
_INLINE_SCRIPT = re.compile(
    r"<script\b(?![^>]*\ssrc\s*=)[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL
)
_OTHER_DIRECTIVES = (
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# Pages that load the scripts this site serves (besides the dashboard).
_OWN_SCRIPTS = ("/console", "/portal", "/api/docs")


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources ('sha256-…') for each distinct inline script of `html`, in order."""
    hashes: dict[str, None] = {}
    for text in _INLINE_SCRIPT.findall(html):
        # A browser hashes the text after HTML's newline normalization.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        hashes[f"'sha256-{digest}'"] = None
    return list(hashes)


def _under(prefix: str) -> bool:
    return request.path == prefix or request.path.startswith(prefix + "/")


def content_security_policy(response: Response) -> str:
    """The policy for `response`: scripts from this site and the page's own inline scripts on
    the dashboard (plus eval, for its templates); scripts from this site on the console, portal,
    start and docs pages; inline scripts only by hash elsewhere."""
    hashes: list[str] = []
    if response.mimetype == "text/html" and not response.is_streamed:
        hashes = inline_script_hashes(response.get_data(as_text=True))
    own_scripts = request.path == "/" or any(_under(p) for p in _OWN_SCRIPTS)
    if _under(DASHBOARD_PREFIX):
        sources = ["'self'", "'unsafe-eval'", *hashes]
    elif own_scripts:
        sources = ["'self'", *hashes]
    else:
        sources = hashes or ["'none'"]
    return "; ".join(["default-src 'none'", f"script-src {' '.join(sources)}", *_OTHER_DIRECTIVES])


def _add_security_headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = content_security_policy(response)
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_security_headers(app: Flask) -> None:
    app.after_request(_add_security_headers)
