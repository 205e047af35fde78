"""create_app(settings=None) -> Flask: the single assembly point of the web process."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from apex.api import init_api
from apex.api.cli import init_cli
from apex.api.runtime import build_runtime
from config import Settings, SettingsError, load_settings
from config.logging import configure_logging


def create_app(settings: Settings | None = None) -> Flask:
    """The web app. Without `settings`, reads the environment and sets up logging; a missing or
    malformed setting stops the process with one line naming it."""
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise SystemExit(f"web: {exc}") from None
        configure_logging(settings)
    app = Flask("apex")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_inbound_body
    app.extensions["apex"] = build_runtime(settings)
    # Behind Heroku's router (APEX_TRUSTED_PROXIES=1): trust the X-Forwarded-For hops the proxies
    # added for the client address failed authentications are counted under, and the nearest
    # proxy's X-Forwarded-Proto/Host for the public URL. 0 (no proxy): trust none of them.
    hops, nearest = settings.trusted_proxies, min(settings.trusted_proxies, 1)
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=nearest, x_host=nearest)  # type: ignore[method-assign]
    init_api(app)
    init_cli(app)
    return app
