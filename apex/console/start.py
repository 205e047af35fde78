"""The start page at /: where everything Apex serves is."""

from __future__ import annotations

from flask import Blueprint, make_response, render_template
from werkzeug.wrappers import Response

start_bp = Blueprint("start", __name__, template_folder="templates")


@start_bp.get("/")
def start() -> Response:
    return make_response(render_template("console/start.html"))
