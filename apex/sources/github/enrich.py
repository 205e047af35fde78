"""GitHub enrichment: users completed from the users API (public email, name, company)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from apex.pipeline.records import Contact, Record
from apex.sources.enrichment import JsonApi, clean_text, completed

if TYPE_CHECKING:
    from apex.sources.enrichment import Calls
    from config import Settings

_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_PROPERTIES = ("name", "company")


class GitHubEnricher:
    """A GitHub user (known by login) gets their public email (never a noreply one), name and
    company."""

    def __init__(self, api: JsonApi) -> None:
        self._api = api

    def __call__(self, record: Record) -> Record:
        if not isinstance(record, Contact) or record.subject.kind != "github":
            return record
        login = dict(record.properties).get("login")
        if not login or not _LOGIN.fullmatch(login):
            return record
        user = self._api.get(f"users/{quote(login, safe='')}", record.at) or {}
        email = clean_text(user.get("email"))
        if email and email.partition("@")[2].endswith("noreply.github.com"):
            email = None
        stated = [(name, clean_text(user.get(name))) for name in _PROPERTIES]
        return completed(record, [("email", email), *stated])

    def close(self) -> None:
        self._api.close()


def build(settings: Settings, calls: Calls) -> GitHubEnricher | None:
    """An enricher when GITHUB_TOKEN is set (against GITHUB_API_BASE), else None."""
    if not settings.github_token:
        return None
    headers = {
        "Authorization": f"Bearer {settings.github_token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    return GitHubEnricher(JsonApi("github", settings.github_api_base, headers, calls))
