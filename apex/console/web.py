"""The console's blueprints and what every page of them shares: the operator's session guard,
CSRF and same-origin checks on every form, HTML error pages, and the scope a subscription page
is seen in (the operator's console, or one integrator's portal link)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from apex.api.runtime import runtime
from apex.apikeys import is_valid_key
from apex.console import session as sessions
from apex.console.links import open_link
from apex.db import utcnow
from apex.errors import ApexError, TooManyRequestsError

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
# A subscription's page and actions, at /console/webhooks/<sub_id>/… for the operator and at
# /portal/<token>/… for the integrator a portal link was issued to.
sub_bp = Blueprint("sub", __name__)
portal_bp = Blueprint("portal", __name__, url_prefix="/portal/<token>")

_PUBLIC = frozenset({"console.sign_in", "console.static"})


@dataclass(frozen=True)
class Scope:
    """Where a subscription page is seen: `operator` (everything) or a portal link (its page,
    test, retry, recover, rotate, pause and resume only)."""

    blueprint: str
    url_args: dict[str, str]
    sub_id: str
    operator: bool
    csrf: str
    expires_at: Any = field(default=None)

    def url(self, name: str, **values: Any) -> str:
        return url_for(f"{self.blueprint}.{name}", **{**self.url_args, **values})


class FormRefused(Exception):
    """A form without a valid CSRF token or sent by a page of another site (403), or holding a
    NUL character (400)."""

    def __init__(self, detail: str, status: int = 403) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


def render(template: str, http_status: int = 200, /, **context: Any) -> Response:
    """A console page. Never cached: pages show secrets once, and delivery logs change."""
    response = make_response(render_template(template, **context), http_status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refuse_nul() -> None:
    for values in (request.args, request.form):
        for name, value in values.items(multi=True):
            if "\x00" in name or "\x00" in value:
                raise FormRefused("A field holds a NUL character.", 400)


def _same_origin() -> bool:
    """False when the request names a page of another site (Origin, else Referer)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        return True  # the CSRF token decides
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def check_form(expected: str) -> None:
    """Raises FormRefused unless this POST carries `expected` as its csrf field and comes from
    a page of this site."""
    if not _same_origin() or not sessions.same(expected, request.form.get("csrf", "")):
        raise FormRefused(
            "This form expired or was not sent from this console. Reload the page and try again."
        )


@bp.before_request
def _guard_console() -> Response | None:
    """Every console page but sign-in needs a valid session; every POST a valid CSRF token."""
    if request.endpoint in _PUBLIC:
        return None
    _refuse_nul()
    rt = runtime()
    current = sessions.current(request)
    if current is None or not is_valid_key(rt.engine, rt.settings.api_keys, current.key):
        response = redirect(url_for("console.sign_in"), 303)
        response.delete_cookie(sessions.COOKIE, path="/")
        return response
    g.session = current
    g.csrf = current.csrf
    if request.method == "POST":
        check_form(current.csrf)
    return None


@sub_bp.url_value_preprocessor
def _take_sub_id(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    g.sub_id = (values or {}).pop("sub_id", "")


@sub_bp.before_request
def _operator_scope() -> None:
    g.scope = Scope("console.sub", {"sub_id": g.sub_id}, g.sub_id, True, g.csrf)


@portal_bp.url_value_preprocessor
def _take_token(_endpoint: str | None, values: dict[str, Any] | None) -> None:
    g.portal_token = (values or {}).pop("token", "")


@portal_bp.before_request
def _portal_scope() -> Response | None:
    """A portal page needs a valid link; anything else under /portal is 404."""
    _refuse_nul()
    rt = runtime()
    link = open_link(rt.engine, rt.settings.secret_key, g.portal_token, utcnow())
    if link is None:
        return render("console/portal_invalid.html", 404)
    csrf = sessions.portal_csrf(link.token)
    g.csrf = csrf
    g.scope = Scope(
        "portal", {"token": link.token}, link.subscription_id, False, csrf, link.expires_at
    )
    if request.method == "POST":
        check_form(csrf)
    return None


@portal_bp.after_request
def _no_referrer(response: Response) -> Response:
    response.headers["Referrer-Policy"] = "no-referrer"  # the link is in the URL
    return response


def _error_page(status: int, title: str, detail: str) -> Response:
    return render("console/error.html", status, title=title, detail=detail)


def _apex_error(exc: ApexError) -> Response:
    response = _error_page(exc.status, exc.code.replace("_", " ").capitalize(), exc.detail)
    if isinstance(exc, TooManyRequestsError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _http_error(exc: HTTPException) -> Response:
    return _error_page(exc.code or 500, exc.name, exc.description or exc.name)


def _form_refused(exc: FormRefused) -> Response:
    return _error_page(exc.status, "Form refused", exc.detail)


for _blueprint in (bp, portal_bp):
    _blueprint.register_error_handler(ApexError, _apex_error)
    _blueprint.register_error_handler(FormRefused, _form_refused)
    _blueprint.register_error_handler(HTTPException, _http_error)
