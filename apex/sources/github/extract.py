"""GitHub: activity by `sender`; emails from push commit authors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from apex.pipeline.records import Contact, Identity, Property, Record, Touchpoint, normalise_email
from apex.sources.reading import dated, get, iso_time, text


def _is_noreply(email: str) -> bool:
    local, _, domain = email.partition("@")
    return domain.endswith("noreply.github.com") or local in ("noreply", "no-reply")


def _github_email(value: Any) -> str | None:
    email = normalise_email(value)
    return email if email and not _is_noreply(email) else None


def _github_person(user: Mapping[str, Any], at: datetime) -> Contact | None:
    user_id = text(user, "id")
    if user_id is None or user.get("type") == "Bot":
        return None
    subject = Identity("github", user_id)
    email = _github_email(user.get("email"))
    properties: tuple[Property, ...] = tuple(
        (name, value)
        for name, value in (
            ("login", text(user, "login")),
            ("name", text(user, "name")),
            ("company", text(user, "company")),
            ("email", email),
        )
        if value
    )
    linked = (subject, Identity("email", email)) if email else (subject,)
    return Contact(subject, linked, at, properties)


def _github_touch(event_type: str, payload: Mapping[str, Any]) -> tuple[str | None, Any] | None:
    """(touchpoint key or None, the event's time) of an activity, or None to ignore the event."""
    action = payload.get("action")
    if event_type in ("star", "watch"):  # one star fires both: one key
        if action not in ("created", "started"):
            return None
        user = text(payload, "sender", "id")
        return f"github:star:{text(payload, 'repository', 'id')}:{user}", payload.get("starred_at")
    if event_type == "fork":
        forkee = payload.get("forkee")
        return f"github:fork:{text(forkee, 'id')}", get(forkee, "created_at")
    if event_type in ("issues", "pull_request"):
        item = payload.get("issue" if event_type == "issues" else "pull_request")
        if action == "opened":
            return f"github:{event_type}:{text(item, 'id')}", get(item, "created_at")
        return None, get(item, "updated_at")
    return None


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    if not isinstance(payload, Mapping):
        raise ValueError("a GitHub payload must be a JSON object")
    if event_type == "push":
        return _github_push(payload, received_at)
    activity = _github_touch(event_type, payload)
    sender = payload.get("sender")
    if activity is None or not isinstance(sender, Mapping):
        return []
    key, when = activity
    at = dated(iso_time(when), received_at, f"GitHub {event_type}")
    person = _github_person(sender, at)
    if person is None:
        return []
    if key is None:
        return [person]
    campaign = text(payload, "repository", "full_name")
    return [person, Touchpoint(key, person.identities, "github", campaign, at)]


def _github_push(payload: Mapping[str, Any], received_at: datetime | None) -> list[Record]:
    """One contact per commit author email (noreply addresses skipped), linked to the sender's
    GitHub id when the author is the sender."""
    sender = payload.get("sender")
    login, sender_id = text(sender, "login"), text(sender, "id")
    pusher = Identity("github", sender_id) if sender_id and get(sender, "type") != "Bot" else None
    at_default = iso_time(get(payload, "head_commit", "timestamp")) or received_at
    records: list[Record] = []
    seen: set[str] = set()
    for commit in payload.get("commits") or []:
        author = get(commit, "author")
        email = _github_email(get(author, "email"))
        if email is None or email in seen:
            continue
        seen.add(email)
        at = dated(iso_time(get(commit, "timestamp")) or at_default, None, "GitHub push commit")
        linked: tuple[Identity, ...] = (Identity("email", email),)
        if pusher is not None and login and text(author, "username") == login:
            linked += (pusher,)
        name = text(author, "name")
        properties: tuple[Property, ...] = (("email", email),) + ((("name", name),) if name else ())
        records.append(Contact(linked[0], linked, at, properties))
    return records
