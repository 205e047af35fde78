"""HubSpot enrichment of companies: a company known by id gets its name from the CRM API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer

from apex.pipeline.enrich import Enricher, build_enricher
from apex.pipeline.records import Company
from config import Settings

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
COMPANY_PATH = "/crm/v3/objects/companies/7700"


@pytest.fixture
def enricher(settings: Settings, httpserver: HTTPServer) -> Iterator[Enricher]:
    base = httpserver.url_for("/").rstrip("/")
    built = build_enricher(
        replace(settings, hubspot_access_token="pat-na1-test", hubspot_api_base=base),
        sleep=lambda _: None,
    )
    assert built is not None
    yield built
    built.close()


def test_a_hubspot_company_gets_its_name(enricher: Enricher, httpserver: HTTPServer) -> None:
    httpserver.expect_request(COMPANY_PATH).respond_with_json(
        {"id": "7700", "properties": {"name": "Acme Inc", "domain": "acme.io"}}
    )
    company = Company("portal-48120977:7700", AT, (("contact:portal-48120977:101", "1"),))

    enriched = enricher(company)

    assert enriched == replace(
        company, properties=(("contact:portal-48120977:101", "1"), ("name", "Acme Inc"))
    )
    [(request, _)] = httpserver.log
    assert request.args["properties"] == "name"
    assert request.headers["Authorization"] == "Bearer pat-na1-test"


def test_a_name_the_event_states_wins_over_the_api(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(COMPANY_PATH).respond_with_json(
        {"id": "7700", "properties": {"name": "Acme Old"}}
    )
    company = Company("portal-48120977:7700", AT, (("name", "Acme New"),))

    assert enricher(company) == company


def test_an_unknown_company_is_left_as_it_is(enricher: Enricher, httpserver: HTTPServer) -> None:
    httpserver.expect_request(COMPANY_PATH).respond_with_json({"message": "nope"}, status=404)
    company = Company("portal-48120977:7700", AT, (("created", "1"),))

    assert enricher(company) == company
