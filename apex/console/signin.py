"""Signing in with an API key, and out."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from werkzeug.wrappers import Response

from apex.api.auth import authenticate
from apex.console import session as sessions
from apex.console.web import bp, render


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response:
    """The sign-in form; a valid key starts a session. Wrong keys count against the address
    like the API's (too many answer 429)."""
    error = None
    if request.method == "POST":
        if not sessions.sign_in_token_valid(request, request.form.get("csrf", "")):
            error = "The form expired. Please sign in again."
        else:
            key = request.form.get("api_key", "").strip()
            if authenticate(key):
                response = redirect(url_for("console.subscriptions"), 303)
                sessions.start(response, request, key)
                return response
            error = "That API key is not valid."
    nonce, token = sessions.sign_in_form(request)
    response = render("console/sign_in.html", 401 if error else 200, csrf=token, error=error)
    sessions.keep_nonce(response, request, nonce)
    return response


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    response = redirect(url_for("console.sign_in"), 303)
    sessions.end(response, request, g.session)
    return response


@bp.route("/")
def home() -> Response:
    return redirect(url_for("console.subscriptions"))
