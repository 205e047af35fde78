"""Settings: one frozen dataclass, loaded once from the environment, failing fast on bad values."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///var/apex.db"
DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
DEFAULT_DB_POOL_SIZE = 10  # per process; see the README's sizing table
DEFAULT_DB_MAX_OVERFLOW = 20
MIN_API_KEY_LENGTH = 24  # a configured key shorter than this is refused unless APEX_ALLOW_WEAK_KEYS


class SettingsError(Exception):
    """A required setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    # REDIS_URL, required; a rediss:// one carries APEX_REDIS_TLS_VERIFY / APEX_REDIS_CA_FILE
    # as redis-py URL options, so every client made from it (web, worker, scheduler, the
    # dashboard) connects alike
    redis_url: str
    # APEX_SECRET_KEY, required: Fernet keys, comma-separated while rotating (the first seals,
    # every one opens)
    secret_key: str = field(repr=False)
    database_url: str = DEFAULT_DATABASE_URL  # DATABASE_URL
    db_pool_size: int = DEFAULT_DB_POOL_SIZE  # APEX_DB_POOL_SIZE, PostgreSQL connections kept
    db_max_overflow: int = DEFAULT_DB_MAX_OVERFLOW  # APEX_DB_MAX_OVERFLOW, opened past the pool
    redis_tls_verify: bool = True  # APEX_REDIS_TLS_VERIFY: verify a rediss:// certificate
    redis_ca_file: str | None = None  # APEX_REDIS_CA_FILE: the CA to verify it with
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # APEX_API_KEYS, comma-separated
    allow_weak_keys: bool = False  # APEX_ALLOW_WEAK_KEYS: accept API keys under 24 characters
    auth_failures_per_minute: int = 20  # APEX_AUTH_FAILURES_PER_MINUTE per client address, 0: off
    trusted_proxies: int = 1  # APEX_TRUSTED_PROXIES, X-Forwarded-For hops; 0: the socket peer
    port: int = 5000  # PORT
    allow_http: bool = False  # APEX_ALLOW_HTTP
    allow_private_destinations: bool = False  # APEX_ALLOW_PRIVATE_DESTINATIONS
    allowed_ports: tuple[tuple[int, int], ...] = ()  # APEX_ALLOWED_PORTS, e.g. 22,8000-8100
    public_url: str | None = None  # APEX_PUBLIC_URL
    retry_schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE  # APEX_RETRY_SCHEDULE
    disable_after: int = 5 * 86400  # APEX_DISABLE_AFTER, seconds
    rotation_overlap: int = 86400  # APEX_ROTATION_OVERLAP, seconds
    delivery_concurrency: int = 64  # APEX_DELIVERY_CONCURRENCY, requests in flight per worker
    endpoint_concurrency: int = 8  # APEX_ENDPOINT_CONCURRENCY, per subscription, all workers
    circuit_failures: int = 5  # APEX_CIRCUIT_FAILURES, consecutive unreachable attempts to open
    circuit_probe: int = 10  # APEX_CIRCUIT_PROBE, seconds to the first probe of an open circuit
    connect_timeout: float = 5.0  # APEX_CONNECT_TIMEOUT, seconds
    request_timeout: float = 15.0  # APEX_REQUEST_TIMEOUT, seconds, wall clock per attempt
    # APEX_CA_BUNDLE, else REQUESTS_CA_BUNDLE, else SSL_CERT_FILE: roots to verify receivers'
    # certificates with (a PEM file or an OpenSSL hashed folder); None: certifi's
    ca_bundle: str | None = None
    egress_proxy: str | None = field(default=None, repr=False)  # APEX_EGRESS_PROXY, http://h:port
    lease_seconds: int = 60  # APEX_LEASE_SECONDS, how long an in-flight delivery is held
    inbound_retry_schedule: tuple[int, ...] = (
        10,
        60,
        300,
        1800,
        7200,
    )  # APEX_INBOUND_RETRY_SCHEDULE
    requeue_after: int = 60  # APEX_REQUEUE_AFTER, seconds a due job may sit before the sweeper
    sweep_interval: int = 60  # APEX_SWEEP_INTERVAL, seconds between sweeps
    retention_days: int = 30  # APEX_RETENTION_DAYS: finished deliveries, events, inbound payloads
    failed_retention_days: int = 90  # APEX_FAILED_RETENTION_DAYS: failed deliveries (recoverable)
    max_inbound_body: int = 1024 * 1024  # APEX_MAX_INBOUND_BODY, bytes
    client_timeout: float = 10.0  # APEX_CLIENT_TIMEOUT, seconds to receive a request in full
    web_concurrency: int = 2  # WEB_CONCURRENCY, gunicorn worker processes
    web_threads: int = 64  # WEB_THREADS, threads per gunicorn worker
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    github_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    hubspot_client_secrets: tuple[str, ...] = field(default=(), repr=False)
    hubspot_legacy_signatures: bool = False  # APEX_HUBSPOT_LEGACY_SIGNATURES: also v1/v2
    hubspot_access_token: str | None = field(default=None, repr=False)  # HUBSPOT_ACCESS_TOKEN
    hubspot_api_base: str = "https://api.hubapi.com"  # HUBSPOT_API_BASE
    stripe_api_key: str | None = field(default=None, repr=False)  # STRIPE_API_KEY
    stripe_api_base: str = "https://api.stripe.com"  # STRIPE_API_BASE
    github_token: str | None = field(default=None, repr=False)  # GITHUB_TOKEN
    github_api_base: str = "https://api.github.com"  # GITHUB_API_BASE
    connector_sync_interval: int = 60  # APEX_CONNECTOR_SYNC_INTERVAL, seconds
    metrics_public: bool = False  # APEX_METRICS_PUBLIC
    log_format: str = "text"  # APEX_LOG_FORMAT: text | json
    log_level: str = "INFO"  # APEX_LOG_LEVEL

    def inbound_secrets(self, source: str) -> tuple[str, ...]:
        return {
            "stripe": self.stripe_webhook_secrets,
            "github": self.github_webhook_secrets,
            "hubspot": self.hubspot_client_secrets,
        }.get(source, ())

    def legacy_signatures(self, source: str) -> bool:
        """Whether `source`'s legacy signature schemes (replayable: no timestamp) are accepted."""
        return source == "hubspot" and self.hubspot_legacy_signatures


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1/0/true/false, got {value!r}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _port_ranges(value: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in _csv(value):
        low, dash, high = (p.strip() for p in part.partition("-"))
        if not (low.isdecimal() and (high.isdecimal() or not dash)):
            raise ValueError(f"expected ports or ranges like 22,8000-8100, got {part!r}")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"expected ports 1-65535, low before high, got {part!r}")
        ranges.append((first, last))
    return tuple(ranges)


def _schedule(value: str) -> tuple[int, ...]:
    steps = tuple(int(part) for part in _csv(value))
    if not steps or any(step <= 0 for step in steps):
        raise ValueError(f"expected comma-separated positive seconds, got {value!r}")
    return steps


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected 0 or a positive integer, got {value!r}")
    return number


def _strong_keys(value: str) -> tuple[str, ...]:
    """Comma-separated keys, none guessable; the message counts characters, never shows a key."""
    keys = _csv(value)
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_API_KEY_LENGTH:
            raise ValueError(
                f"key {position} of {len(keys)} has {len(key)} characters, at least "
                f"{MIN_API_KEY_LENGTH} are required (create a stored key with `make apikey`, "
                "or set APEX_ALLOW_WEAK_KEYS=1 for a local trial)"
            )
    return keys


def _fernet_keys(value: str) -> str:
    """One Fernet key, or several comma-separated while rotating (the first seals). The
    message counts keys, never shows one."""
    keys = _csv(value)
    for position, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            which = f"key {position} of {len(keys)} is not" if len(keys) > 1 else "expected"
            raise ValueError(
                f"{which} a Fernet key (32 url-safe base64 bytes); make one with `make key`"
            )
    if not keys:
        raise ValueError("expected a Fernet key (32 url-safe base64 bytes)")
    return ",".join(keys)


def _redis_url(value: str, verify: bool, ca_file: str | None) -> str:
    """REDIS_URL with the TLS settings as redis-py URL options (rediss:// only; options the URL
    already names win)."""
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    if parts.scheme != "rediss":
        return value
    named = {name for name, _ in parse_qsl(parts.query)}
    options = []
    if not verify and "ssl_cert_reqs" not in named:
        options.append(("ssl_cert_reqs", "none"))
    if ca_file and verify and "ssl_ca_certs" not in named:
        options.append(("ssl_ca_certs", ca_file))
    if not options:
        return value
    query = "&".join(filter(None, [parts.query, urlencode(options)]))
    return urlunsplit(parts._replace(query=query))


def _database_url(value: str) -> str:
    # Heroku still hands out postgres://, which SQLAlchemy 2 no longer accepts.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value[len(prefix) :]
    if value.startswith(("postgresql+psycopg://", "sqlite://")):
        return value
    raise ValueError("expected a postgres:// or sqlite:/// URL")


def _base_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"expected an http(s):// base URL, got {value!r}")
    return value.rstrip("/")


def _existing_path(value: str) -> str:
    if not os.path.exists(value):
        raise ValueError(f"no such file or folder: {value!r}")
    return value


def _proxy_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError("expected http://[user:password@]host:port (an HTTP CONNECT proxy)")
    return value


def _log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"expected text or json, got {value!r}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `environ` (default os.environ). Raises SettingsError naming the var."""
    env = os.environ if environ is None else environ

    def parse_value(name: str, raw: str, parse: Callable[[str], T]) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name} is malformed: {exc}") from None

    def get(name: str, parse: Callable[[str], T], default: T) -> T:
        raw = env.get(name)
        return default if not raw else parse_value(name, raw, parse)

    def required(name: str, parse: Callable[[str], T]) -> T:
        raw = env.get(name)
        if not raw:
            raise SettingsError(f"{name} is required but not set")
        return parse_value(name, raw, parse)

    allow_weak_keys = get("APEX_ALLOW_WEAK_KEYS", _flag, False)
    redis_tls_verify = get("APEX_REDIS_TLS_VERIFY", _flag, True)
    redis_ca_file = get("APEX_REDIS_CA_FILE", _existing_path, None)
    api_keys: tuple[str, ...] = get("APEX_API_KEYS", _csv if allow_weak_keys else _strong_keys, ())
    settings = Settings(
        redis_url=required("REDIS_URL", lambda v: _redis_url(v, redis_tls_verify, redis_ca_file)),
        secret_key=required("APEX_SECRET_KEY", _fernet_keys),
        database_url=get("DATABASE_URL", _database_url, DEFAULT_DATABASE_URL),
        db_pool_size=get("APEX_DB_POOL_SIZE", _positive_int, DEFAULT_DB_POOL_SIZE),
        db_max_overflow=get("APEX_DB_MAX_OVERFLOW", _non_negative_int, DEFAULT_DB_MAX_OVERFLOW),
        redis_tls_verify=redis_tls_verify,
        redis_ca_file=redis_ca_file,
        api_keys=api_keys,
        allow_weak_keys=allow_weak_keys,
        auth_failures_per_minute=get("APEX_AUTH_FAILURES_PER_MINUTE", _non_negative_int, 20),
        trusted_proxies=get("APEX_TRUSTED_PROXIES", _non_negative_int, 1),
        port=get("PORT", _positive_int, 5000),
        allow_http=get("APEX_ALLOW_HTTP", _flag, False),
        allow_private_destinations=get("APEX_ALLOW_PRIVATE_DESTINATIONS", _flag, False),
        allowed_ports=get("APEX_ALLOWED_PORTS", _port_ranges, ()),
        public_url=get("APEX_PUBLIC_URL", lambda v: v.rstrip("/"), None),
        retry_schedule=get("APEX_RETRY_SCHEDULE", _schedule, DEFAULT_RETRY_SCHEDULE),
        disable_after=get("APEX_DISABLE_AFTER", _positive_int, 5 * 86400),
        rotation_overlap=get("APEX_ROTATION_OVERLAP", _positive_int, 86400),
        delivery_concurrency=get("APEX_DELIVERY_CONCURRENCY", _positive_int, 64),
        endpoint_concurrency=get("APEX_ENDPOINT_CONCURRENCY", _positive_int, 8),
        circuit_failures=get("APEX_CIRCUIT_FAILURES", _positive_int, 5),
        circuit_probe=get("APEX_CIRCUIT_PROBE", _positive_int, 10),
        connect_timeout=get("APEX_CONNECT_TIMEOUT", _positive_float, 5.0),
        request_timeout=get("APEX_REQUEST_TIMEOUT", _positive_float, 15.0),
        # For certificate verification only: the proxy variables never apply to deliveries.
        ca_bundle=next(
            (
                parse_value(name, env[name], _existing_path)
                for name in ("APEX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
                if env.get(name)
            ),
            None,
        ),
        egress_proxy=get("APEX_EGRESS_PROXY", _proxy_url, None),
        lease_seconds=get("APEX_LEASE_SECONDS", _positive_int, 60),
        inbound_retry_schedule=get(
            "APEX_INBOUND_RETRY_SCHEDULE", _schedule, (10, 60, 300, 1800, 7200)
        ),
        requeue_after=get("APEX_REQUEUE_AFTER", _positive_int, 60),
        sweep_interval=get("APEX_SWEEP_INTERVAL", _positive_int, 60),
        retention_days=get("APEX_RETENTION_DAYS", _positive_int, 30),
        failed_retention_days=get("APEX_FAILED_RETENTION_DAYS", _positive_int, 90),
        max_inbound_body=get("APEX_MAX_INBOUND_BODY", _positive_int, 1024 * 1024),
        client_timeout=get("APEX_CLIENT_TIMEOUT", _positive_float, 10.0),
        web_concurrency=get("WEB_CONCURRENCY", _positive_int, 2),
        web_threads=get("WEB_THREADS", _positive_int, 64),
        stripe_webhook_secrets=get("STRIPE_WEBHOOK_SECRET", _csv, ()),
        github_webhook_secrets=get("GITHUB_WEBHOOK_SECRET", _csv, ()),
        hubspot_client_secrets=get("HUBSPOT_CLIENT_SECRET", _csv, ()),
        hubspot_legacy_signatures=get("APEX_HUBSPOT_LEGACY_SIGNATURES", _flag, False),
        hubspot_access_token=get("HUBSPOT_ACCESS_TOKEN", str, None),
        hubspot_api_base=get("HUBSPOT_API_BASE", _base_url, "https://api.hubapi.com"),
        stripe_api_key=get("STRIPE_API_KEY", str, None),
        stripe_api_base=get("STRIPE_API_BASE", _base_url, "https://api.stripe.com"),
        github_token=get("GITHUB_TOKEN", str, None),
        github_api_base=get("GITHUB_API_BASE", _base_url, "https://api.github.com"),
        connector_sync_interval=get("APEX_CONNECTOR_SYNC_INTERVAL", _positive_int, 60),
        metrics_public=get("APEX_METRICS_PUBLIC", _flag, False),
        log_format=get("APEX_LOG_FORMAT", _log_format, "text"),
        log_level=get("APEX_LOG_LEVEL", str.upper, "INFO"),
    )
    _check_lease(settings)
    return settings


def _check_lease(settings: Settings) -> None:
    """The lease must outlast an attempt (at most the timeout plus a second) and one queued
    behind it: shorter, the sweeper would send again attempts still in flight."""
    least = 2 * (settings.request_timeout + 1)
    if settings.lease_seconds < least:
        raise SettingsError(
            f"APEX_LEASE_SECONDS ({settings.lease_seconds}) must be at least {least:g}: twice "
            f"APEX_REQUEST_TIMEOUT ({settings.request_timeout:g}) plus a second, so no attempt "
            "outlives its lease"
        )
