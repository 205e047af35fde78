"""HubSpot enrichment: contacts and deals completed from the CRM objects API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from apex.pipeline.records import Company, Contact, Deal, Property, Record
from apex.sources.enrichment import Answer, Calls, JsonApi, completed, new_properties
from apex.sources.hubspot.extract import COMPANY_PROPERTIES, CONTACT_PROPERTIES, DEAL_PROPERTIES

if TYPE_CHECKING:
    from config import Settings


class HubSpotEnricher:
    """Contacts get their email, name, company, lifecycle stage, analytics source and UTM
    properties; deals their stage, amount and currency; companies their name."""

    def __init__(self, api: JsonApi) -> None:
        self._api = api

    def __call__(self, record: Record) -> Record:
        if isinstance(record, Contact) and record.subject.kind == "hubspot":
            return self._contact(record)
        if isinstance(record, Deal):
            return replace(record, properties=self._object("deals", record, DEAL_PROPERTIES))
        if isinstance(record, Company):
            return replace(record, properties=self._object("companies", record, COMPANY_PROPERTIES))
        return record

    def close(self) -> None:
        self._api.close()

    def _contact(self, record: Contact) -> Contact:
        object_id = _object_id(record.subject.value)
        if object_id is None:
            return record
        params = {"properties": ",".join(CONTACT_PROPERTIES)}
        found = _properties(
            self._api.get(f"crm/v3/objects/contacts/{object_id}", record.at, params)
        )
        return completed(
            record, [(ours, found.get(theirs)) for theirs, ours in CONTACT_PROPERTIES.items()]
        )

    def _object(
        self, path: str, record: Deal | Company, names: Mapping[str, str]
    ) -> tuple[Property, ...]:
        """The record's properties, plus those of `names` the objects API has and it lacks."""
        object_id = _object_id(record.key)
        if object_id is None:
            return record.properties
        params = {"properties": ",".join(names)}
        found = _properties(self._api.get(f"crm/v3/objects/{path}/{object_id}", record.at, params))
        added = new_properties(
            record.properties, [(ours, found.get(theirs)) for theirs, ours in names.items()]
        )
        return record.properties + added


def build(settings: Settings, calls: Calls) -> HubSpotEnricher | None:
    """An enricher when HUBSPOT_ACCESS_TOKEN is set (against HUBSPOT_API_BASE), else None."""
    if not settings.hubspot_access_token:
        return None
    headers = {
        "Authorization": f"Bearer {settings.hubspot_access_token}",
        "Accept": "application/json",
    }
    return HubSpotEnricher(JsonApi("hubspot", settings.hubspot_api_base, headers, calls))


def _object_id(value: str) -> str | None:
    """The object id of a HubSpot name ("portal-<portal>:<id>" or "<id>"), if it is one."""
    object_id = value.rpartition(":")[2]
    return object_id if object_id.isdigit() else None


def _properties(answer: Answer) -> Mapping[str, Any]:
    found = (answer or {}).get("properties")
    return found if isinstance(found, Mapping) else {}
