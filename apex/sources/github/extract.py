"""GitHub: people from `sender` and the other accounts and emails a payload names (User accounts
only, never a noreply address); touchpoints for a star, a fork, an issue, pull request or
discussion opened, a sponsorship and a Marketplace purchase."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apex.pipeline.records import Contact, Identity, Property, Record, Touchpoint, normalise_email
from apex.sources.reading import dated, get, iso_time, text
from apex.sources.source import UnusableEventError

# Events whose sender takes part in a repository's community: the sender is a person, and the
# object (path) dates the event. Touches are handled apart (see _touch).
_PARTICIPATION: dict[str, tuple[str, ...]] = {
    "issues": ("issue",),
    "pull_request": ("pull_request",),
    "discussion": ("discussion",),
    "issue_comment": ("comment",),
    "commit_comment": ("comment",),
    "discussion_comment": ("comment",),
    "pull_request_review_comment": ("comment",),
    "pull_request_review": ("review",),
    "pull_request_review_thread": ("pull_request",),
    "gollum": (),
}

# Events that name people only through git commits: where their commits are.
_COMMITS: dict[str, tuple[tuple[str, ...], ...]] = {
    "check_suite": (("check_suite", "head_commit"),),
    "merge_group": (("merge_group", "head_commit"),),
    "workflow_run": (("workflow_run", "head_commit"),),
    "deployment_review": (("workflow_run", "head_commit"),),
}

# What is ignored, by family, so the reason says why.
_IGNORED: dict[str, str] = {
    **dict.fromkeys(
        (
            "check_run",
            "deployment",
            "deployment_status",
            "deployment_protection_rule",
            "page_build",
            "repository_dispatch",
            "workflow_dispatch",
            "workflow_job",
        ),
        "automation: CI, deployments and workflows",
    ),
    **dict.fromkeys(
        (
            "branch_protection_configuration",
            "branch_protection_rule",
            "create",
            "delete",
            "deploy_key",
            "label",
            "meta",
            "milestone",
            "package",
            "project",
            "project_card",
            "project_column",
            "projects_v2",
            "projects_v2_item",
            "public",
            "registry_package",
            "release",
            "repository",
            "repository_import",
            "repository_ruleset",
            "team",
            "team_add",
            "org_block",
        ),
        "repository and organization administration",
    ),
    **dict.fromkeys(
        (
            "github_app_authorization",
            "installation",
            "installation_repositories",
            "installation_target",
        ),
        "GitHub App installations",
    ),
    **dict.fromkeys(
        (
            "code_scanning_alert",
            "dependabot_alert",
            "repository_advisory",
            "repository_vulnerability_alert",
            "secret_scanning_alert",
            "secret_scanning_alert_location",
            "security_advisory",
            "security_and_analysis",
        ),
        "security alerts and advisories",
    ),
    "ping": "a hook's test delivery",
}


@dataclass(frozen=True)
class _Touch:
    key: str
    campaign: str | None
    at: Any  # the event's own time, as sent


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    """The people and touches a GitHub event carries, the sender first.

    Raises UnusableEventError when it carries none: an event type Apex does not read, an
    action that says nothing new (an unstar, a removal), an organization or bot as the only
    account, or only noreply emails. Raises ValueError only when neither the event nor the
    caller gives a time for what it found (extract without `received_at`).
    """
    if not isinstance(payload, Mapping):
        raise UnusableEventError("A GitHub payload must be a JSON object")
    reader = _READERS.get(event_type)
    if reader is None:
        family = _IGNORED.get(event_type, "an event type Apex does not read")
        raise UnusableEventError(f"GitHub {event_type} events carry nothing Apex uses ({family})")
    records = list(reader(event_type, payload, received_at))
    if not records:
        raise UnusableEventError(_nobody(event_type, payload))
    return records


def _nobody(event_type: str, payload: Mapping[str, Any]) -> str:
    action = text(payload, "action")
    what = f"GitHub {event_type} {action}" if action else f"GitHub {event_type}"
    sender = get(payload, "sender", "type")
    if event_type in _COMMITS or event_type in ("push", "status"):
        return f"{what} names no commit author or committer with a usable email (noreply skipped)"
    if isinstance(sender, str) and sender != "User":
        article = "an" if sender[:1].lower() in "aeiou" else "a"
        return f"{what} was sent by {article} {sender} account, which is never a lead"
    return f"{what} names no person Apex tracks"


# --- people -------------------------------------------------------------------------------


def _is_noreply(email: str) -> bool:
    local, _, domain = email.partition("@")
    return domain.endswith("noreply.github.com") or local in ("noreply", "no-reply")


def _email(value: Any) -> str | None:
    email = normalise_email(value)
    return email if email and not _is_noreply(email) else None


def _user_id(user: Any) -> Identity | None:
    """The GitHub identity of a User account (never an organization, a bot or a team)."""
    if get(user, "type") != "User":
        return None
    user_id = text(user, "id")
    return Identity("github", user_id) if user_id else None


def _person(user: Any, at: datetime, email: Any = None) -> Contact | None:
    """A User account as a contact, with its email or `email` (noreply addresses dropped)."""
    subject = _user_id(user)
    if subject is None:
        return None
    address = _email(get(user, "email")) or _email(email)
    properties: tuple[Property, ...] = tuple(
        (name, value)
        for name, value in (
            ("login", text(user, "login")),
            ("name", text(user, "name")),
            ("company", text(user, "company")),
            ("email", address),
        )
        if value
    )
    linked = (subject, Identity("email", address)) if address else (subject,)
    return Contact(subject, linked, at, properties)


def _people(candidates: Iterable[Contact | None]) -> list[Contact]:
    """The contacts found, each once (the first mention wins)."""
    seen: set[Identity] = set()
    found: list[Contact] = []
    for contact in candidates:
        if contact is not None and contact.subject not in seen:
            seen.add(contact.subject)
            found.append(contact)
    return found


def _git_person(git: Any, user: Any, at: datetime) -> Contact | None:
    """A commit's author or committer (`git`: name and email) as a contact keyed by the email,
    linked to `user` when that is the User account behind it; None without a usable email."""
    email = _email(get(git, "email"))
    if email is None:
        return None
    address = Identity("email", email)
    account = _user_id(user)
    linked = (address, account) if account is not None else (address,)
    name = text(git, "name")
    properties: tuple[Property, ...] = (("email", email),) + ((("name", name),) if name else ())
    return Contact(address, linked, at, properties)


def _committers(commits: Iterable[Any], at: datetime | None, pusher: Any = None) -> list[Contact]:
    """One contact per usable author or committer email of `commits`, linked to the pusher's
    account when the commit names the pusher's login as its `username`."""
    login = text(pusher, "login")
    found: list[Contact | None] = []
    for commit in commits:
        when = dated(iso_time(get(commit, "timestamp")) or at, None, "GitHub commit")
        for role in ("author", "committer"):
            git = get(commit, role)
            user = pusher if login and text(git, "username") == login else None
            found.append(_git_person(git, user, when))
    return _people(found)


# --- readers, one per kind of event -------------------------------------------------------


def _participation(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    path = _PARTICIPATION[event_type]
    item = get(payload, *path) if path else None
    touch = _touch(event_type, payload, item)
    when = next(
        (iso_time(get(item, name)) for name in ("submitted_at", "updated_at", "created_at")
         if iso_time(get(item, name))),
        None,
    )  # fmt: skip
    at = dated(iso_time(touch.at) if touch else when, received, f"GitHub {event_type}")
    person = _person(payload.get("sender"), at)
    if person is None:
        return []
    if touch is None:
        return [person]
    return [person, Touchpoint(touch.key, person.identities, "github", touch.campaign, at)]


def _touch(event_type: str, payload: Mapping[str, Any], item: Any) -> _Touch | None:
    """The touch an opening makes: an issue, pull request or discussion opened."""
    opened = {"issues": "opened", "pull_request": "opened", "discussion": "created"}
    if opened.get(event_type) != payload.get("action"):
        return None
    item_id = text(item, "id")
    if item_id is None:
        return None
    campaign = text(payload, "repository", "full_name")
    return _Touch(f"github:{event_type}:{item_id}", campaign, get(item, "created_at"))


def _star(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    # One starring fires both `star` (created) and `watch` (started): one touch key.
    if payload.get("action") not in ("created", "started"):
        action = payload.get("action")
        raise UnusableEventError(f"GitHub {event_type} {action}: only a new star is a touch")
    user = text(payload, "sender", "id")
    repo = text(payload, "repository", "id")
    if repo is None:
        raise UnusableEventError(f"GitHub {event_type} names no repository")
    at_text = payload.get("starred_at") if event_type == "star" else None
    return _touched(payload, received, f"github:star:{repo}:{user}", at_text, event_type)


def _fork(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    forkee = payload.get("forkee")
    fork_id = text(forkee, "id")
    if fork_id is None:
        raise UnusableEventError("GitHub fork names no forkee (the new repository)")
    return _touched(
        payload, received, f"github:fork:{fork_id}", get(forkee, "created_at"), event_type
    )


def _touched(
    payload: Mapping[str, Any], received: datetime | None, key: str, when: Any, what: str
) -> Sequence[Record]:
    at = dated(iso_time(when), received, f"GitHub {what}")
    person = _person(payload.get("sender"), at)
    if person is None:
        return []
    campaign = text(payload, "repository", "full_name")
    return [person, Touchpoint(key, person.identities, "github", campaign, at)]


def _sponsorship(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    sponsorship = payload.get("sponsorship")
    sponsor = get(sponsorship, "sponsor")
    created = payload.get("action") == "created"
    when = get(sponsorship, "created_at") if created else None
    at = dated(iso_time(when), received, "GitHub sponsorship")
    person = _person(sponsor, at)
    if person is None:
        return []
    if not created:
        return [person]
    sponsorable = text(sponsorship, "sponsorable", "login")
    key = "github:sponsorship:" + (
        text(sponsorship, "node_id")
        or f"{text(sponsor, 'id')}:{text(sponsorship, 'sponsorable', 'id')}"
    )
    campaign = f"sponsors/{sponsorable}" if sponsorable else None
    return [person, Touchpoint(key, person.identities, "github", campaign, at)]


def _marketplace(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    purchase = payload.get("marketplace_purchase")
    account = get(purchase, "account")
    at = dated(iso_time(payload.get("effective_date")), received, "GitHub marketplace_purchase")
    # The billing email of a User account is that user's; an organization's is never a lead.
    people = _people(
        [
            _person(payload.get("sender"), at),
            _person(account, at, get(account, "organization_billing_email")),
        ]
    )
    account_id, plan_id = text(account, "id"), text(purchase, "plan", "id")
    if not people or payload.get("action") != "purchased" or not (account_id and plan_id):
        return people
    buyer = people[0]
    plan = text(purchase, "plan", "name")
    key = f"github:marketplace:{account_id}:{plan_id}"
    campaign = f"marketplace/{plan}" if plan else "marketplace"
    return [*people, Touchpoint(key, buyer.identities, "github", campaign, at)]


def _members(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    """A collaborator, team member or organization member added or invited: that user."""
    action = payload.get("action")
    at = dated(None, received, f"GitHub {event_type}")
    if event_type in ("member", "membership") and action in ("added", "edited"):
        return _people([_person(payload.get("member"), at)])
    if event_type == "organization" and action == "member_added":
        return _people([_person(get(payload, "membership", "user"), at)])
    if event_type == "organization" and action == "member_invited":
        invitation = payload.get("invitation")
        invited = _person(payload.get("user"), at, get(invitation, "email"))
        email = _email(get(invitation, "email"))
        if invited is None and email:  # invited by email, with no account yet
            address = Identity("email", email)
            invited = Contact(address, (address,), at, (("email", email),))
        return _people([invited])
    raise UnusableEventError(
        f"GitHub {event_type} {action}: only additions and invitations name a person Apex tracks"
    )


def _push(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    sender = payload.get("sender")
    at = iso_time(get(payload, "head_commit", "timestamp")) or received
    commits = payload.get("commits")
    committers = _committers(commits if isinstance(commits, list) else [], at, sender)
    # The pusher's own email (the sender's, when its name is the sender's login).
    pusher = payload.get("pusher")
    pusher_email = get(pusher, "email") if text(pusher, "name") == text(sender, "login") else None
    person = _person(sender, at, pusher_email) if at is not None else None
    if person is None:
        return committers
    known = {i for c in committers if isinstance(c, Contact) for i in c.identities}
    if set(person.identities) <= known:
        return committers
    return [person, *committers]


def _commits(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    commits = [get(payload, *path) for path in _COMMITS[event_type]]
    return _committers([c for c in commits if isinstance(c, Mapping)], received)


def _status(
    event_type: str, payload: Mapping[str, Any], received: datetime | None
) -> Sequence[Record]:
    """A commit status: the commit's author and committer, linked to their User accounts."""
    commit = payload.get("commit")
    at = iso_time(payload.get("created_at")) or received
    found: list[Contact | None] = []
    for role in ("author", "committer"):
        git = get(commit, "commit", role)
        when = dated(iso_time(get(git, "date")) or at, None, "GitHub status")
        found.append(_git_person(git, get(commit, role), when))
    return _people(found)


_READERS = {
    **dict.fromkeys(_PARTICIPATION, _participation),
    **dict.fromkeys(_COMMITS, _commits),
    "star": _star,
    "watch": _star,
    "fork": _fork,
    "sponsorship": _sponsorship,
    "marketplace_purchase": _marketplace,
    "member": _members,
    "membership": _members,
    "organization": _members,
    "push": _push,
    "status": _status,
}
