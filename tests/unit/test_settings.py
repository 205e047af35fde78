"""Settings: defaults, coercion, and one clear line naming a missing or malformed variable."""

from __future__ import annotations

import pytest

from apex.secretbox import generate_key
from config import SettingsError, load_settings

KEY = generate_key()
BASE = {"REDIS_URL": "redis://127.0.0.1:6379/0", "APEX_SECRET_KEY": KEY}


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
        {**BASE, "APEX_API_KEYS": "a, b,,c", "APEX_ALLOW_HTTP": "1", "APEX_RETRY_SCHEDULE": "1,2"}
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
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(env)


def test_secrets_are_not_in_repr() -> None:
    s = load_settings(
        {**BASE, "APEX_API_KEYS": "topsecretkey", "STRIPE_WEBHOOK_SECRET": "whsec_zz"}
    )
    assert "topsecretkey" not in repr(s) and KEY not in repr(s) and "whsec_zz" not in repr(s)
