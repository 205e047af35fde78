"""Settings: defaults, coercion, and one clear line naming a missing or malformed variable."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from apex.secretbox import generate_key
from config import SettingsError, load_settings

KEY = generate_key()
BASE = {"REDIS_URL": "redis://127.0.0.1:6379/0", "APEX_SECRET_KEY": KEY}
STRONG_KEY = "apex_" + "s3cr3t" * 4  # 29 characters


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.database_url == "sqlite:///var/apex.db"
    assert s.port == 5000
    assert s.retry_schedule[0] == 5 and s.retry_schedule[-1] == 86400
    assert s.allow_private_destinations is False


def test_heroku_postgres_scheme_is_accepted() -> None:
    s = load_settings({**BASE, "DATABASE_URL": "postgres://u:p@db.example.com:5432/apex"})
    assert s.database_url == "postgresql+psycopg://u:p@db.example.com:5432/apex"


def test_lists_and_flags_are_coerced() -> None:
    s = load_settings(
        {
            **BASE,
            "APEX_API_KEYS": "a, b,,c",
            "APEX_ALLOW_WEAK_KEYS": "1",
            "APEX_ALLOW_HTTP": "1",
            "APEX_RETRY_SCHEDULE": "1,2",
        }
    )
    assert s.api_keys == ("a", "b", "c")
    assert s.allow_http is True
    assert s.retry_schedule == (1, 2)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APEX_SECRET_KEY": KEY}, "REDIS_URL"),
        ({"REDIS_URL": "redis://x"}, "APEX_SECRET_KEY"),
        ({**BASE, "APEX_SECRET_KEY": "short"}, "APEX_SECRET_KEY"),
        ({**BASE, "PORT": "eighty"}, "PORT"),
        ({**BASE, "DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({**BASE, "APEX_RETRY_SCHEDULE": "5,-1"}, "APEX_RETRY_SCHEDULE"),
        ({**BASE, "APEX_ALLOW_HTTP": "maybe"}, "APEX_ALLOW_HTTP"),
        ({**BASE, "APEX_ALLOW_WEAK_KEYS": "maybe"}, "APEX_ALLOW_WEAK_KEYS"),
        ({**BASE, "APEX_AUTH_FAILURES_PER_MINUTE": "-1"}, "APEX_AUTH_FAILURES_PER_MINUTE"),
        ({**BASE, "APEX_AUTH_FAILURES_PER_MINUTE": "many"}, "APEX_AUTH_FAILURES_PER_MINUTE"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_secrets_are_not_in_repr() -> None:
    s = load_settings({**BASE, "APEX_API_KEYS": STRONG_KEY, "STRIPE_WEBHOOK_SECRET": "whsec_zz"})
    assert STRONG_KEY not in repr(s) and KEY not in repr(s) and "whsec_zz" not in repr(s)


@pytest.mark.parametrize(
    "keys",
    ["a", "apex_key_abc123", STRONG_KEY + ",x", "x" * 23],
    ids=["one-letter", "seed-example", "one-weak-of-two", "23-characters"],
)
def test_short_api_keys_stop_the_boot_with_one_line(keys: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "APEX_API_KEYS": keys})

    message = str(raised.value)
    assert message.startswith("APEX_API_KEYS is malformed: key ")
    assert "at least 24" in message and "APEX_ALLOW_WEAK_KEYS=1" in message
    assert "\n" not in message
    leakable = [key for key in keys.split(",") if len(key) > 3]  # "a" is in any sentence
    assert all(key not in message for key in leakable), "a key leaked into the message"


def test_a_24_character_key_is_accepted() -> None:
    assert load_settings({**BASE, "APEX_API_KEYS": "k" * 24}).api_keys == ("k" * 24,)


def test_weak_keys_are_accepted_for_a_local_trial() -> None:
    s = load_settings({**BASE, "APEX_API_KEYS": "apex_key_abc123", "APEX_ALLOW_WEAK_KEYS": "1"})
    assert s.api_keys == ("apex_key_abc123",) and s.allow_weak_keys is True


def test_auth_failure_limit_defaults_to_20_and_0_turns_it_off() -> None:
    assert load_settings(BASE).auth_failures_per_minute == 20
    assert (
        load_settings({**BASE, "APEX_AUTH_FAILURES_PER_MINUTE": "0"}).auth_failures_per_minute == 0
    )
    assert (
        load_settings({**BASE, "APEX_AUTH_FAILURES_PER_MINUTE": "5"}).auth_failures_per_minute == 5
    )


@pytest.mark.parametrize(("lease", "timeout"), [("29", "15"), ("3", "3"), ("10", "4.5")])
def test_a_lease_an_attempt_could_outlive_stops_the_boot_naming_both(
    lease: str, timeout: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, "APEX_LEASE_SECONDS": lease, "APEX_REQUEST_TIMEOUT": timeout})
    message = str(raised.value)
    assert message.startswith(f"APEX_LEASE_SECONDS ({lease}) must be at least ")
    assert f"APEX_REQUEST_TIMEOUT ({float(timeout):g})" in message and "\n" not in message


def test_a_lease_of_twice_the_timeout_plus_a_second_is_accepted() -> None:
    s = load_settings({**BASE, "APEX_LEASE_SECONDS": "32", "APEX_REQUEST_TIMEOUT": "15"})
    assert (s.lease_seconds, s.request_timeout) == (32, 15.0)
    assert (s.circuit_failures, s.circuit_probe) == (5, 10)


def test_a_rediss_url_carries_the_tls_settings_as_redis_py_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    tls = {**BASE, "REDIS_URL": "rediss://:pw@redis.example.com:6380/0"}
    assert load_settings(tls).redis_url == "rediss://:pw@redis.example.com:6380/0"
    unverified = load_settings({**tls, "APEX_REDIS_TLS_VERIFY": "0"})
    assert unverified.redis_url.endswith("/0?ssl_cert_reqs=none")
    assert unverified.redis_tls_verify is False
    with_ca = load_settings({**tls, "APEX_REDIS_CA_FILE": str(ca)})
    assert parse_qs(urlsplit(with_ca.redis_url).query) == {"ssl_ca_certs": [str(ca)]}
    assert with_ca.redis_ca_file == str(ca)
    # A plain redis:// URL, and options the URL names itself, are left as they are.
    plain = {**BASE, "APEX_REDIS_TLS_VERIFY": "0"}
    assert load_settings(plain).redis_url == BASE["REDIS_URL"]
    named = {**tls, "REDIS_URL": tls["REDIS_URL"] + "?ssl_cert_reqs=required"}
    assert load_settings({**named, "APEX_REDIS_TLS_VERIFY": "0"}).redis_url == named["REDIS_URL"]


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"APEX_REDIS_TLS_VERIFY": "maybe"}, "APEX_REDIS_TLS_VERIFY"),
        ({"APEX_REDIS_CA_FILE": "/nonexistent/ca.pem"}, "APEX_REDIS_CA_FILE"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"APEX_DB_POOL_SIZE": "0"}, "APEX_DB_POOL_SIZE"),
        ({"APEX_DB_MAX_OVERFLOW": "-1"}, "APEX_DB_MAX_OVERFLOW"),
        ({"APEX_SECRET_KEY": f"{KEY},not-a-key"}, "APEX_SECRET_KEY"),
    ],
)
def test_bad_managed_service_settings_stop_the_boot_naming_them(
    overrides: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({**BASE, **overrides})
    message = str(raised.value)
    assert message.startswith(f"{variable} is malformed") and "\n" not in message
    assert KEY not in message


def test_pool_sizes_default_to_10_and_20_and_are_settable() -> None:
    s = load_settings(BASE)
    assert (s.db_pool_size, s.db_max_overflow) == (10, 20)
    s = load_settings({**BASE, "APEX_DB_POOL_SIZE": "3", "APEX_DB_MAX_OVERFLOW": "0"})
    assert (s.db_pool_size, s.db_max_overflow) == (3, 0)


def test_several_secret_keys_are_accepted_while_rotating() -> None:
    new = generate_key()
    assert load_settings({**BASE, "APEX_SECRET_KEY": f"{new}, {KEY}"}).secret_key == f"{new},{KEY}"
    with pytest.raises(SettingsError, match="key 2 of 2 is not a Fernet key"):
        load_settings({**BASE, "APEX_SECRET_KEY": f"{new},{KEY[:-4]}"})
