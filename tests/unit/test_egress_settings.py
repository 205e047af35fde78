"""Settings for verifying receivers' certificates and for the egress proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from apex.secretbox import generate_key
from config import SettingsError, load_settings

BASE = {"REDIS_URL": "redis://127.0.0.1:6379/0"}


def env(**extra: str) -> dict[str, str]:
    return {**BASE, "APEX_SECRET_KEY": generate_key(), **extra}


def test_ca_bundle_prefers_apex_then_requests_then_ssl_cert_file(tmp_path: Path) -> None:
    files = {}
    for name in ("APEX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("pem")
    given = {name: str(path) for name, path in files.items()}

    assert load_settings(env(**given)).ca_bundle == given["APEX_CA_BUNDLE"]
    unset = {**given, "APEX_CA_BUNDLE": ""}  # empty counts as unset
    assert load_settings(env(**unset)).ca_bundle == given["REQUESTS_CA_BUNDLE"]
    only_ssl = {"SSL_CERT_FILE": given["SSL_CERT_FILE"]}
    assert load_settings(env(**only_ssl)).ca_bundle == given["SSL_CERT_FILE"]
    assert load_settings(env()).ca_bundle is None
    assert load_settings(env(APEX_CA_BUNDLE=str(tmp_path))).ca_bundle == str(tmp_path)  # a folder


def test_a_ca_bundle_that_does_not_exist_stops_boot(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SSL_CERT_FILE is malformed: no such file"):
        load_settings(env(SSL_CERT_FILE=str(tmp_path / "missing.pem")))


@pytest.mark.parametrize(
    "url", ["https://proxy:4750", "http://proxy", "proxy:4750", "http://:4750", "http://p:1/x"]
)
def test_egress_proxy_must_be_http_host_and_port(url: str) -> None:
    with pytest.raises(SettingsError, match="APEX_EGRESS_PROXY is malformed"):
        load_settings(env(APEX_EGRESS_PROXY=url))


def test_egress_proxy_credentials_stay_out_of_the_settings_repr() -> None:
    # That they reach the proxy as Proxy-Authorization is tested through the real transport
    # (tests/unit/test_ssrf.py).
    settings = load_settings(env(APEX_EGRESS_PROXY="http://apex:s%40cret@smokescreen:4750"))
    assert settings.egress_proxy == "http://apex:s%40cret@smokescreen:4750"
    assert "s%40cret" not in repr(settings)
