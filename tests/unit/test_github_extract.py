"""GitHub extract(): people from `sender` and the emails payloads carry, touchpoints for the
activities that count, and a reason for everything else (payload shapes as GitHub sends them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apex.pipeline.records import Contact, Identity, Touchpoint
from apex.sources.github.extract import extract
from apex.sources.source import UnusableEventError

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
JANE_GH = Identity("github", "41234567")
JANE_EMAIL = Identity("email", "jane.doe@acme.io")
SENDER = {"login": "janedoe-dev", "id": 41234567, "type": "User", "site_admin": False}
ORG = {"login": "acme-labs", "id": 38302899, "type": "Organization"}
BOT = {"login": "dependabot[bot]", "id": 49699333, "type": "Bot"}
REPO = {"id": 812345001, "full_name": "acme-labs/widget"}
STAR = {
    "action": "created",
    "starred_at": "2026-11-26T14:03:22Z",
    "repository": REPO,
    "sender": SENDER,
}
STARRED = datetime(2026, 11, 26, 14, 3, 22, tzinfo=UTC)
JANE_GH_CONTACT = Contact(JANE_GH, (JANE_GH,), STARRED, (("login", "janedoe-dev"),))


def touch_keys(records: list[Any]) -> list[str]:
    return [r.key for r in records if isinstance(r, Touchpoint)]


def contacts(records: list[Any]) -> list[Contact]:
    return [r for r in records if isinstance(r, Contact)]


# --- stars, forks and openings: the sender and a touch ----------------------------------------


def test_a_star_gives_the_sender_and_a_github_touchpoint() -> None:
    assert extract("star", STAR, None) == [
        JANE_GH_CONTACT,
        Touchpoint(
            "github:star:812345001:41234567", (JANE_GH,), "github", "acme-labs/widget", STARRED
        ),
    ]


def test_star_and_watch_of_one_starring_share_the_touchpoint_key() -> None:
    watch = {"action": "started", "repository": REPO, "sender": SENDER}
    records = extract("watch", watch, RECEIVED)
    assert touch_keys(records) == touch_keys(extract("star", STAR, None))
    assert records[0].at == RECEIVED


@pytest.mark.parametrize(
    ("event_type", "payload", "touch_key"),
    [
        (
            "fork",
            {
                "forkee": {"id": 912345777, "created_at": "2026-11-26T14:10:05Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            "github:fork:912345777",
        ),
        (
            "issues",
            {
                "action": "opened",
                "issue": {"id": 3012345678, "created_at": "2026-11-26T15:00:00Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            "github:issues:3012345678",
        ),
        (
            "pull_request",
            {
                "action": "opened",
                "number": 57,
                "pull_request": {"id": 2212345678, "created_at": "2026-11-26T16:00:00Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            "github:pull_request:2212345678",
        ),
        (
            "discussion",
            {
                "action": "created",
                "discussion": {"id": 4012345, "created_at": "2026-11-26T16:30:00Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            "github:discussion:4012345",
        ),
        (
            "issues",
            {
                "action": "closed",
                "issue": {"id": 3012345678, "updated_at": "2026-11-27T09:00:00Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            None,
        ),
        (
            "issue_comment",
            {
                "action": "created",
                "comment": {"id": 77, "created_at": "2026-11-27T09:30:00Z"},
                "issue": {"id": 3012345678},
                "repository": REPO,
                "sender": SENDER,
            },
            None,
        ),
        (
            "pull_request_review",
            {
                "action": "submitted",
                "review": {"id": 88, "submitted_at": "2026-11-27T10:00:00Z"},
                "repository": REPO,
                "sender": SENDER,
            },
            None,
        ),
    ],
    ids=[
        "fork",
        "issue opened",
        "pull request opened",
        "discussion created",
        "issue closed: the sender only",
        "comment: the sender only",
        "review: the sender only",
    ],
)
def test_github_activity_by_the_sender(
    event_type: str, payload: dict[str, Any], touch_key: str | None
) -> None:
    records = extract(event_type, payload, None)
    assert records[0] == Contact(JANE_GH, (JANE_GH,), records[0].at, (("login", "janedoe-dev"),))
    assert touch_keys(records) == ([touch_key] if touch_key else [])
    touches = [r for r in records if isinstance(r, Touchpoint)]
    assert all(t.campaign == "acme-labs/widget" and t.at == records[0].at for t in touches)


def test_an_event_is_dated_by_its_object() -> None:
    comment = {
        "action": "edited",
        "comment": {"created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-27T09:30:00Z"},
        "sender": SENDER,
    }
    [person] = extract("issue_comment", comment, RECEIVED)
    assert person.at == datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    [person] = extract("gollum", {"pages": [], "sender": SENDER}, RECEIVED)
    assert person.at == RECEIVED


@pytest.mark.parametrize(
    ("email", "linked"),
    [("Jane.Doe@acme.io", True), ("41234567+janedoe-dev@users.noreply.github.com", False)],
)
def test_a_sender_email_is_linked_unless_noreply(email: str, linked: bool) -> None:
    star = {**STAR, "sender": {**SENDER, "email": email, "name": "Jane Doe"}}
    person = extract("star", star, None)[0]
    assert isinstance(person, Contact)
    assert (JANE_EMAIL in person.identities) is linked
    assert ("name", "Jane Doe") in person.properties
    assert (("email", "jane.doe@acme.io") in person.properties) is linked


# --- sponsorships and Marketplace purchases ---------------------------------------------------


def sponsorship(action: str, sponsor: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action,
        "sponsorship": {
            "node_id": "MDExOlNwb25zb3JzaGlwMQ==",
            "created_at": "2026-11-20T19:24:46+00:00",
            "sponsorable": {"login": "octocat", "id": 5, "type": "User"},
            "sponsor": sponsor,
            "tier": {"monthly_price_in_cents": 500, "name": "$5 a month"},
        },
        "sender": sponsor,
    }


def test_a_new_sponsorship_gives_the_sponsor_and_a_touch() -> None:
    sponsor = {**SENDER, "email": "jane.doe@acme.io"}
    person, touch = extract("sponsorship", sponsorship("created", sponsor), RECEIVED)
    assert isinstance(person, Contact) and isinstance(touch, Touchpoint)
    assert person.identities == (JANE_GH, JANE_EMAIL)
    assert touch == Touchpoint(
        "github:sponsorship:MDExOlNwb25zb3JzaGlwMQ==",
        (JANE_GH, JANE_EMAIL),
        "github",
        "sponsors/octocat",
        datetime(2026, 11, 20, 19, 24, 46, tzinfo=UTC),
    )


def test_a_sponsorship_change_gives_the_sponsor_only() -> None:
    records = extract("sponsorship", sponsorship("pending_tier_change", SENDER), RECEIVED)
    assert records == [Contact(JANE_GH, (JANE_GH,), RECEIVED, (("login", "janedoe-dev"),))]


def test_an_organization_sponsor_is_never_a_lead() -> None:
    with pytest.raises(UnusableEventError, match="Organization"):
        extract("sponsorship", sponsorship("created", ORG), RECEIVED)


def purchase(action: str, account: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": action,
        "effective_date": "2026-11-25T00:00:00+00:00",
        "sender": {**SENDER, "email": "jane.doe@acme.io"},
        "marketplace_purchase": {
            "account": account,
            "billing_cycle": "monthly",
            "plan": {"id": 435, "name": "Basic Plan", "monthly_price_in_cents": 1000},
        },
    }


def test_a_marketplace_purchase_for_an_organization_gives_the_buyer_and_a_touch() -> None:
    org = {**ORG, "organization_billing_email": "billing@acme.io"}
    records = extract("marketplace_purchase", purchase("purchased", org), RECEIVED)
    at = datetime(2026, 11, 25, tzinfo=UTC)
    assert contacts(records) == [
        Contact(
            JANE_GH,
            (JANE_GH, JANE_EMAIL),
            at,
            (("login", "janedoe-dev"), ("email", "jane.doe@acme.io")),
        )
    ]  # the organization's billing email names no person
    assert [r for r in records if isinstance(r, Touchpoint)] == [
        Touchpoint(
            "github:marketplace:38302899:435",
            (JANE_GH, JANE_EMAIL),
            "github",
            "marketplace/Basic Plan",
            at,
        )
    ]


def test_a_user_account_billing_email_is_that_users() -> None:
    ann = {"login": "ann", "id": 77, "type": "User", "organization_billing_email": "ann@x.org"}
    records = extract("marketplace_purchase", purchase("cancelled", ann), RECEIVED)
    ann_gh = Identity("github", "77")
    assert [c.identities for c in contacts(records)] == [
        (JANE_GH, JANE_EMAIL),
        (ann_gh, Identity("email", "ann@x.org")),
    ]
    assert touch_keys(records) == []  # a cancellation is no touch


# --- memberships: the member ------------------------------------------------------------------

HACKTOCAT = {"login": "hacktocat", "id": 39652351, "type": "User"}
HACKTOCAT_GH = Identity("github", "39652351")


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("member", {"action": "added", "member": HACKTOCAT, "sender": SENDER}),
        ("membership", {"action": "added", "member": HACKTOCAT, "sender": SENDER}),
        (
            "organization",
            {"action": "member_added", "membership": {"user": HACKTOCAT}, "sender": SENDER},
        ),
    ],
    ids=["collaborator", "team member", "organization member"],
)
def test_a_member_added_is_the_member_not_the_admin(
    event_type: str, payload: dict[str, Any]
) -> None:
    assert extract(event_type, payload, RECEIVED) == [
        Contact(HACKTOCAT_GH, (HACKTOCAT_GH,), RECEIVED, (("login", "hacktocat"),))
    ]


def test_an_invitation_by_email_is_a_contact_by_email() -> None:
    invited = {
        "action": "member_invited",
        "invitation": {"id": 1, "login": None, "email": "Ann@Example.org", "role": "member"},
        "user": None,
        "sender": SENDER,
    }
    ann = Identity("email", "ann@example.org")
    assert extract("organization", invited, RECEIVED) == [
        Contact(ann, (ann,), RECEIVED, (("email", "ann@example.org"),))
    ]


def test_an_invitation_of_an_account_links_its_email() -> None:
    invited = {
        "action": "member_invited",
        "invitation": {"id": 1, "login": "hacktocat", "email": "hack@example.org"},
        "user": HACKTOCAT,
        "sender": SENDER,
    }
    [person] = extract("organization", invited, RECEIVED)
    assert isinstance(person, Contact)
    assert person.identities == (HACKTOCAT_GH, Identity("email", "hack@example.org"))


# --- commits: authors and committers by email -------------------------------------------------


def test_push_gives_commit_author_emails_except_noreply() -> None:
    push = {
        "ref": "refs/heads/main",
        "head_commit": {"timestamp": "2026-11-26T17:00:00+01:00"},
        "commits": [
            {
                "author": {
                    "name": "Jane Doe",
                    "email": "jane.doe@acme.io",
                    "username": "janedoe-dev",
                },
                "timestamp": "2026-11-26T17:00:00+01:00",
            },
            {"author": {"name": "Bot", "email": "noreply@github.com", "username": "web-flow"}},
            {"author": {"name": "Ann", "email": "ann@example.org"}},
            {"author": {"name": "Jane Doe", "email": "JANE.DOE@acme.io"}},
        ],
        "sender": SENDER,
    }
    records = extract("push", push, None)
    at = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    ann = Identity("email", "ann@example.org")
    assert records == [
        Contact(
            JANE_EMAIL,
            (JANE_EMAIL, JANE_GH),
            at,
            (("email", "jane.doe@acme.io"), ("name", "Jane Doe")),
        ),
        Contact(ann, (ann,), at, (("email", "ann@example.org"), ("name", "Ann"))),
    ]


def test_push_committers_count_and_the_pusher_is_the_sender() -> None:
    push = {
        "head_commit": {"timestamp": "2026-11-26T17:00:00Z"},
        "pusher": {"name": "janedoe-dev", "email": "jane.doe@acme.io"},
        "commits": [
            {
                "author": {"name": "Ann", "email": "ann@example.org"},
                "committer": {"name": "Bob", "email": "bob@example.org"},
            }
        ],
        "sender": SENDER,
    }
    records = extract("push", push, RECEIVED)
    assert [c.identities for c in contacts(records)] == [
        (JANE_GH, JANE_EMAIL),
        (Identity("email", "ann@example.org"),),
        (Identity("email", "bob@example.org"),),
    ]


def test_push_by_a_bot_with_noreply_commits_is_ignored() -> None:
    push = {
        "pusher": {
            "name": "dependabot[bot]",
            "email": "49699333+dependabot[bot]@users.noreply.github.com",
        },
        "commits": [{"author": {"email": "49699333+dependabot[bot]@users.noreply.github.com"}}],
        "sender": BOT,
    }
    with pytest.raises(UnusableEventError, match="no commit author or committer"):
        extract("push", push, RECEIVED)


@pytest.mark.parametrize(
    ("event_type", "payload", "email"),
    [
        (
            "workflow_run",
            {
                "action": "completed",
                "workflow_run": {
                    "head_commit": {
                        "timestamp": "2026-11-26T17:00:00Z",
                        "author": {"email": "octocat@github.com", "name": "Mona Lisa"},
                        "committer": {"email": "noreply@github.com", "name": "GitHub"},
                    },
                    "actor": SENDER,
                },
                "sender": SENDER,
            },
            "octocat@github.com",
        ),
        (
            "deployment_review",
            {
                "action": "requested",
                "workflow_run": {
                    "head_commit": {
                        "timestamp": "2026-11-26T17:00:00Z",
                        "author": {"name": "Massimiliano", "email": "max@example.org"},
                        "committer": {"name": "GitHub", "email": "noreply@github.com"},
                    }
                },
                "sender": SENDER,
            },
            "max@example.org",
        ),
        (
            "check_suite",
            {
                "action": "completed",
                "check_suite": {
                    "head_commit": {
                        "timestamp": "2026-11-26T17:00:00Z",
                        "author": {"name": "Ann", "email": "ann@example.org"},
                    }
                },
                "sender": BOT,
            },
            "ann@example.org",
        ),
        (
            "merge_group",
            {
                "action": "checks_requested",
                "merge_group": {
                    "head_commit": {
                        "timestamp": "2026-11-26T17:00:00Z",
                        "author": {"name": "Ann", "email": "ann@example.org"},
                        "committer": {"name": "Ann", "email": "ann@example.org"},
                    }
                },
                "sender": SENDER,
            },
            "ann@example.org",
        ),
    ],
    ids=["workflow_run", "deployment_review", "check_suite", "merge_group"],
)
def test_automation_events_give_their_commit_emails_only(
    event_type: str, payload: dict[str, Any], email: str
) -> None:
    records = extract(event_type, payload, RECEIVED)
    at = datetime(2026, 11, 26, 17, 0, tzinfo=UTC)
    address = Identity("email", email)
    assert [(c.subject, c.identities, c.at) for c in contacts(records)] == [
        (address, (address,), at)
    ]
    assert touch_keys(records) == []


def test_a_status_links_the_commit_email_to_its_author_account() -> None:
    status = {
        "sha": "6113728f",
        "state": "success",
        "created_at": "2026-11-26T17:05:00Z",
        "commit": {
            "commit": {
                "author": {
                    "name": "Jane",
                    "email": "jane.doe@acme.io",
                    "date": "2026-11-26T17:00:00Z",
                },
                "committer": {"name": "GitHub", "email": "noreply@github.com"},
            },
            "author": SENDER,
            "committer": {"login": "web-flow", "id": 19864447, "type": "User"},
        },
        "sender": SENDER,
    }
    [person] = extract("status", status, RECEIVED)
    assert isinstance(person, Contact)
    assert person.identities == (JANE_EMAIL, JANE_GH)
    assert person.at == datetime(2026, 11, 26, 17, 0, tzinfo=UTC)


# --- ignored, with the reason -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "payload", "reason"),
    [
        ("ping", {"zen": "Design for failure.", "hook_id": 1, "sender": SENDER}, "test delivery"),
        ("star", {**STAR, "action": "deleted", "starred_at": None}, "only a new star"),
        ("star", {**STAR, "sender": BOT}, "Bot account"),
        ("fork", {"forkee": {"id": 1}, "sender": ORG}, "Organization account"),
        ("issues", {"action": "opened", "issue": {"id": 1}, "sender": {"id": 9}}, "no person"),
        ("release", {"action": "published", "sender": SENDER}, "administration"),
        ("check_run", {"action": "completed", "sender": SENDER}, "automation"),
        ("dependabot_alert", {"action": "fixed", "sender": ORG}, "security alerts"),
        ("installation", {"action": "created", "sender": SENDER}, "GitHub App"),
        ("some_future_event", {"sender": SENDER}, "an event type Apex does not read"),
        ("member", {"action": "removed", "member": HACKTOCAT}, "only additions"),
        ("organization", {"action": "renamed", "sender": SENDER}, "only additions"),
        ("check_suite", {"action": "requested", "check_suite": {}}, "no commit author"),
        ("star", ["not", "an", "object"], "JSON object"),
    ],
    ids=[
        "ping",
        "unstar",
        "bot",
        "organization",
        "account without type",
        "administration",
        "automation",
        "security",
        "installation",
        "unknown event",
        "member removed",
        "organization renamed",
        "no commit",
        "not an object",
    ],
)
def test_ignores_github_events_that_say_nothing_about_a_person(
    event_type: str, payload: Any, reason: str
) -> None:
    with pytest.raises(UnusableEventError, match=reason):
        extract(event_type, payload, RECEIVED)


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("star", {"action": "created", "sender": "janedoe", "starred_at": 5}),
        ("star", {"action": {"x": 1}, "sender": SENDER}),
        ("fork", {"forkee": None, "sender": {**SENDER, "id": True}}),
        ("issues", {"action": "opened", "issue": "#1", "sender": {**SENDER, "id": 10**400}}),
        ("push", {"commits": {"a": 1}, "head_commit": 7, "sender": None, "pusher": []}),
        ("push", {"commits": [None, 3, {"author": "me"}], "sender": SENDER}),
        ("status", {"commit": {"commit": {"author": {"email": 5}}}}),
        ("marketplace_purchase", {"action": "purchased", "marketplace_purchase": []}),
        ("sponsorship", {"action": "created", "sponsorship": {"sponsor": [SENDER]}}),
        ("organization", {"action": "member_invited", "invitation": "x", "user": 3}),
        ("deployment_review", {"workflow_run": {"head_commit": {"author": None}}}),
        ("fork", {"sender": SENDER, "repository": REPO}),
        ("star", {"action": "created", "sender": SENDER}),
        ("marketplace_purchase", {"action": "purchased", "sender": SENDER}),
        ("issues", {"action": "opened", "issue": {"number": 1}, "sender": SENDER}),
        ("sponsorship", {"action": "created", "sender": SENDER}),
    ],
)
def test_odd_content_is_read_or_ignored_never_a_crash(event_type: str, payload: Any) -> None:
    try:
        records = extract(event_type, payload, RECEIVED)
    except UnusableEventError as exc:
        assert str(exc)
    else:
        assert records and all(isinstance(r, Contact | Touchpoint) for r in records)
        assert not [key for key in touch_keys(records) if "None" in key]


def test_an_undated_github_event_needs_the_received_time() -> None:
    watch = {"action": "started", "repository": REPO, "sender": SENDER}
    with pytest.raises(ValueError, match="no time"):
        extract("watch", watch, None)
