"""Costs that stay flat as data grows: `python -m bench.scale`.

Times the hot queries, through the store functions production calls, on a nearly empty database
(SMALL deliveries) and on a large one of the same schema (BENCH_SCALE_ROWS deliveries), and
prints one JSON line per query: the median of REPEATS runs on each, in ms, and their ratio (the
goal: at most 2). Both databases get the same working set (the deliveries due now, a month of
conversions, what one retention pass deletes); the large one has far more history (finished
deliveries and their attempts, processed inbound events, leads), spread over the retention
periods as a steady flow would leave it. So a ratio near 1 says a query's cost follows its work,
not the size of the tables.

Tables per database: deliveries and events N, attempts 3 N, inbound events N, leads N / 5 (with
their identities, properties, touchpoints and conversions). The schema is built by the
migrations (alembic upgrade head), the rows are made in SQL (INSERT ... SELECT over a series),
then PostgreSQL is vacuumed and analyzed as autovacuum would. SQLite is not analyzed: a
deployment's file has no statistics unless someone runs ANALYZE.

Each query's plans (EXPLAIN (ANALYZE, BUFFERS) of every statement it runs, taken inside a
savepoint just before the statement itself runs, so in the same state; EXPLAIN QUERY PLAN on
SQLite) go to BENCH_SCALE_PLANS.

Env: BENCH_SCALE_SMALL_URL and BENCH_SCALE_LARGE_URL (two databases whose Apex tables are
dropped and rebuilt; default: two SQLite files in a temporary folder), BENCH_SCALE_ROWS
(deliveries in the large one: 1,000,000 on PostgreSQL, 100,000 on SQLite), BENCH_SCALE_PLANS
(default: scale_plans_<database>.txt in a temporary folder), BENCH_SCALE_REPEATS (5),
BENCH_SCALE_REUSE=1 (time the databases an earlier run loaded, if they hold as many rows).
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex import retention
from apex.db import make_engine
from apex.delivery import store as deliveries
from apex.inbound import store as inbound
from apex.models import metadata, subscriptions
from apex.pipeline import attribution, identity
from bench.report import emit, ratio

SMALL = 1000
REPEATS = int(os.environ.get("BENCH_SCALE_REPEATS", "5"))
REUSE = os.environ.get("BENCH_SCALE_REUSE") == "1"  # keep databases loaded by an earlier run
CLAIM_BATCH = 200  # ids a drain claims per transaction (workers.jobs.READY_DELIVERIES)
PAGE = 50  # the API's default page size
LEASE = timedelta(seconds=60)  # APEX_LEASE_SECONDS
REQUEUE_AFTER = timedelta(seconds=60)  # APEX_REQUEUE_AFTER
POLICY = retention.Policy.of_days(30, 90)  # APEX_RETENTION_DAYS, APEX_FAILED_RETENTION_DAYS
DAY = 86400

# The working set, the same in every database: deliveries 1-300 pending and due, 301-330 in
# flight with an expired lease, 331-380 waiting for a retry tomorrow, 381-400 due at the two
# subscriptions whose circuit is open; half of 1-380 belong to sub_0, whose log is paged.
DUE, IN_FLIGHT, LATER, ACTIVE = 300, 330, 380, 400
SUBSCRIPTIONS = 50  # sub_48 and sub_49 have an open circuit
QUEUED_INBOUND = 100  # inbound events 1-100 queued and due
MONTH_SALES = 100  # leads 1-100 pay in the month reported on; 1-10 are partly refunded
EXPIRED = 250  # deliveries (240 delivered, 10 failed), events and inbound events one pass prunes
MONTH_START, MONTH_END = 31 * DAY, 1 * DAY  # the month reported on: seconds before now
# JSON values as SQL text expressions (of the series' column i)
NUMBERED, EMPTY, EVERY_EVENT = """'{"n": ' || i || '}'""", "'{}'", """'["*"]'"""


class Sql:
    """The SQL fragments that differ between PostgreSQL and SQLite."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def series(self, n: int, name: str) -> str:
        """A FROM item: the integers 1..n as column `name`."""
        if self.pg:
            return f"generate_series(1, {n}) AS s_{name}({name})"
        return (
            f"(WITH RECURSIVE r_{name}(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM r_{name} "
            f"WHERE v < {n}) SELECT v AS {name} FROM r_{name}) AS s_{name}"
        )

    def ago(self, seconds: str) -> str:
        """The time `seconds` (an integer expression) before :now."""
        if self.pg:
            return f"(CAST(:now AS timestamptz) - ({seconds}) * INTERVAL '1 second')"
        return self.shift(":now", f"-({seconds})")

    def shift(self, time_: str, seconds: str) -> str:
        """The time `seconds` after the time `time_`."""
        if self.pg:
            return f"({time_} + ({seconds}) * INTERVAL '1 second')"
        # As SQLAlchemy stores a DateTime on SQLite, so stored and bound times compare as text.
        return f"(strftime('%Y-%m-%d %H:%M:%S', {time_}, ({seconds}) || ' seconds') || '.000000')"

    def json(self, text: str) -> str:
        return f"CAST({text} AS json)" if self.pg else text


def _deliveries_sql(sql: Sql, n: int) -> list[str]:
    """Events and deliveries 1..n, then their attempts."""
    h = "((i / 10) % 100)"  # history rows: 2 % failed, 1 % skipped, 1 % cancelled, delivered
    kept = f"CASE WHEN {h} < 3 THEN {89 * DAY} ELSE {29 * DAY} END"  # failed/skipped: 90 days
    age = (
        f"CASE WHEN i <= {ACTIVE} THEN 60 + i "
        f"ELSE 3600 + CAST(i - {ACTIVE} AS BIGINT) * {kept} / {n - ACTIVE} END"
    )
    created = sql.ago(age)
    status = (
        f"CASE WHEN i <= {DUE} THEN 'pending' WHEN i <= {IN_FLIGHT} THEN 'in_flight' "
        f"WHEN i <= {ACTIVE} THEN 'pending' WHEN {h} < 2 THEN 'failed' "
        f"WHEN {h} = 2 THEN 'skipped' WHEN {h} = 3 THEN 'cancelled' ELSE 'delivered' END"
    )
    subscription = (
        f"'sub_' || CASE WHEN i <= {LATER} AND i % 2 = 0 THEN 0 WHEN i <= {LATER} "
        f"THEN 1 + i % 47 WHEN i <= {ACTIVE} THEN 48 + i % 2 WHEN i % 10 = 0 THEN 0 "
        "ELSE 1 + i % 47 END"
    )
    finished = sql.ago(f"({age}) - 300")
    return [
        f"INSERT INTO events (id, type, data, created_at) SELECT 'evt_' || i, 'lead.created', "
        f"{sql.json(NUMBERED)}, {created} FROM {sql.series(n, 'i')}",
        "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, "
        "next_attempt_at, lease_until, enqueued_at, last_status_code, created_at, updated_at, "
        f"delivered_at) SELECT 'dlv_' || i, 'evt_' || i, {subscription}, {status}, "
        f"CASE WHEN i <= {DUE} THEN 0 WHEN i <= {IN_FLIGHT} THEN 1 WHEN i <= {LATER} THEN 2 "
        f"WHEN i <= {ACTIVE} THEN 1 ELSE 3 END, "
        f"CASE WHEN i <= {DUE} THEN {sql.ago('30')} WHEN i <= {IN_FLIGHT} THEN {sql.ago('200')} "
        f"WHEN i <= {LATER} THEN {sql.ago(f'-{DAY}')} WHEN i <= {ACTIVE} THEN {sql.ago('30')} "
        "END, "
        f"CASE WHEN i > {DUE} AND i <= {IN_FLIGHT} THEN {sql.ago('120')} END, "
        f"CASE WHEN i > {ACTIVE} THEN {created} WHEN i % 2 = 1 THEN {sql.ago('3600')} END, "
        f"CASE WHEN i <= {ACTIVE} THEN NULL WHEN {h} < 2 THEN 500 WHEN {h} > 3 THEN 200 END, "
        f"{created}, CASE WHEN i <= {ACTIVE} THEN {sql.ago('60')} ELSE {finished} END, "
        f"CASE WHEN i > {ACTIVE} AND {h} > 3 THEN {finished} END FROM {sql.series(n, 'i')}",
        _attempts_sql(sql, "'dlv_%'"),
    ]


def _attempts_sql(sql: Sql, ids: str) -> str:
    """The attempts of the deliveries whose id is LIKE `ids`: as many as each counts."""
    return (
        "INSERT INTO attempts (id, delivery_id, attempted_at, duration_ms, status_code, "
        "response_body) SELECT 'att_' || d.id || '_' || k, d.id, "
        f"{sql.shift('d.created_at', 'k * 60')}, 120, d.last_status_code, 'ok' "
        f"FROM deliveries d CROSS JOIN {sql.series(3, 'k')} "
        f"WHERE d.id LIKE {ids} AND k <= d.attempts"
    )


def _inbound_sql(sql: Sql, n: int) -> list[str]:
    """Inbound events 1..n: the first QUEUED_INBOUND queued, then 2 % failed, 8 % ignored, the
    rest processed (failed ones kept 90 days, the others 30)."""
    q = QUEUED_INBOUND
    kept = f"CASE WHEN i % 100 < 2 THEN {89 * DAY} ELSE {29 * DAY} END"
    age = f"CASE WHEN i <= {q} THEN 10 + i ELSE 60 + CAST(i - {q} AS BIGINT) * {kept} / {n - q} END"
    status = (
        f"CASE WHEN i <= {q} THEN 'queued' WHEN i % 100 < 2 THEN 'failed' "
        "WHEN i % 100 < 10 THEN 'ignored' ELSE 'processed' END"
    )
    return [
        "INSERT INTO inbound_events (id, source, dedupe_key, type, payload, headers, status, "
        "attempts, error, next_attempt_at, enqueued_at, received_at, processed_at) "
        "SELECT 'inb_' || i, CASE i % 3 WHEN 0 THEN 'stripe' WHEN 1 THEN 'hubspot' "
        "ELSE 'github' END, 'k' || i, 'customer.created', "
        f"{sql.json(NUMBERED)}, {sql.json(EMPTY)}, {status}, "
        f"CASE WHEN i <= {q} THEN 0 WHEN i % 100 < 2 THEN 5 ELSE 1 END, "
        f"CASE WHEN i > {q} AND i % 100 < 2 THEN 'enrich: 503 from the API' END, "
        f"CASE WHEN i <= {q} THEN {sql.ago('5')} END, "
        f"CASE WHEN i <= {q} THEN {sql.ago('3600')} ELSE {sql.ago(age)} END, {sql.ago(age)}, "
        f"CASE WHEN i > {q} AND i % 100 >= 2 THEN {sql.ago(f'({age}) - 1')} END "
        f"FROM {sql.series(n, 'i')}"
    ]


def _leads_sql(sql: Sql, n: int) -> list[str]:
    """Leads 1..n created over two years (lead 1 first), each with an email identity and a
    touchpoint; even ones also a Stripe customer with three properties. Leads 1..MONTH_SALES pay
    in the month reported on, 1..10 of them are partly refunded; every fifth lead after them
    paid once in the two years before it."""
    created = sql.ago(f"3600 + CAST({n} - i AS BIGINT) * {730 * DAY} / {n}")
    source = (
        "CASE i % 4 WHEN 0 THEN 'google' WHEN 1 THEN 'newsletter' WHEN 2 THEN 'linkedin' "
        "ELSE 'direct' END"
    )
    email = "'p' || i || '@example.com'"
    paid = f"{MONTH_START} - 1000 - i * {(MONTH_START - MONTH_END - 2000) // MONTH_SALES}"
    series = sql.series(n, "i")
    return [
        "INSERT INTO leads (id, email, name, source, created_at, updated_at) SELECT "
        f"'lead_' || i, {email}, 'Person ' || i, {source}, {created}, {created} FROM {series}",
        "INSERT INTO lead_identities (kind, value, lead_id, created_at) "
        f"SELECT 'email', {email}, 'lead_' || i, {created} FROM {series}",
        "INSERT INTO lead_identities (kind, value, lead_id, created_at) "
        f"SELECT 'stripe', 'cus_' || i, 'lead_' || i, {created} FROM {series} WHERE i % 2 = 0",
        "INSERT INTO object_properties (object_kind, object_value, name, value, occurred_at) "
        "SELECT 'stripe', 'cus_' || i, CASE k WHEN 1 THEN 'email' WHEN 2 THEN 'name' "
        f"ELSE 'created' END, CASE k WHEN 1 THEN {email} WHEN 2 THEN 'Person ' || i "
        f"ELSE '1' END, {created} FROM {series} CROSS JOIN {sql.series(3, 'k')} "
        "WHERE i % 2 = 0",
        "INSERT INTO touchpoints (key, lead_id, source, campaign, occurred_at) SELECT "
        f"'tp_' || i, 'lead_' || i, {source}, 'campaign' || (i % 20), {created} FROM {series}",
        "INSERT INTO conversions (key, lead_id, kind, amount, currency, occurred_at, "
        f"attributed_at) SELECT 'pi_m' || i, 'lead_' || i, 'payment', 10000 + i, 'usd', "
        f"{sql.ago(paid)}, {sql.ago(paid)} FROM {series} WHERE i <= {MONTH_SALES}",
        "INSERT INTO conversions (key, lead_id, kind, amount, currency, occurred_at, "
        f"attributed_at) SELECT 'pi_m' || i || '\\:refund', 'lead_' || i, 'refund', -500, 'usd', "
        f"{sql.ago(f'{paid} - 600')}, {sql.ago(paid)} FROM {series} WHERE i <= 10",
        "INSERT INTO conversions (key, lead_id, kind, amount, currency, occurred_at, "
        f"attributed_at) SELECT 'pi_h' || i, 'lead_' || i, 'payment', 5000, 'usd', "
        f"{sql.ago(f'{MONTH_START + 3600} + CAST(i AS BIGINT) * {720 * DAY} / {n}')}, "
        f"{sql.ago(f'{MONTH_START + 3600} + CAST(i AS BIGINT) * {720 * DAY} / {n}')} "
        f"FROM {series} WHERE i > {MONTH_SALES} AND i % 5 = 0",
    ]


def _subscriptions_sql(sql: Sql) -> list[str]:
    return [
        "INSERT INTO subscriptions (id, url, events, description, status, secret, circuit, "
        "circuit_since, unreachable_count, probe_at, probe_interval, created_at, updated_at) "
        f"SELECT 'sub_' || (i - 1), 'https://hooks.example.com/' || i, {sql.json(EVERY_EVENT)}, "
        "'', 'active', 'not-a-token', CASE WHEN i > 48 THEN 'open' ELSE 'closed' END, "
        f"CASE WHEN i > 48 THEN {sql.ago('600')} END, CASE WHEN i > 48 THEN 5 ELSE 0 END, "
        f"CASE WHEN i > 48 THEN {sql.ago('-300')} END, CASE WHEN i > 48 THEN 640 END, "
        f"{sql.ago(f'{100 * DAY}')}, {sql.ago(f'{100 * DAY}')} "
        f"FROM {sql.series(SUBSCRIPTIONS, 'i')}"
    ]


def _expired_sql(sql: Sql, tag: int) -> list[str]:
    """What one retention pass deletes, with ids of their own (`tag`): EXPIRED events with one
    delivery each (three attempts), delivered 31 days ago or failed 91 days ago, 20 events that
    matched no subscription, and EXPIRED inbound events (processed 31 days ago or failed 91)."""
    old = f"CASE WHEN i <= {EXPIRED - 10} THEN {31 * DAY} + i ELSE {91 * DAY} + i END"
    series = sql.series(EXPIRED, "i")
    return [
        "INSERT INTO events (id, type, data, created_at) SELECT "
        f"'evt_x{tag}_' || i, 'lead.created', {sql.json(EMPTY)}, {sql.ago(old)} FROM {series}",
        "INSERT INTO events (id, type, data, created_at) SELECT "
        f"'evt_y{tag}_' || i, 'lead.created', {sql.json(EMPTY)}, {sql.ago(old)} FROM {series} "
        "WHERE i <= 20",
        "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, "
        "last_status_code, created_at, updated_at, delivered_at) SELECT "
        f"'dlv_x{tag}_' || i, 'evt_x{tag}_' || i, 'sub_' || (1 + i % 47), "
        f"CASE WHEN i <= {EXPIRED - 10} THEN 'delivered' ELSE 'failed' END, 3, "
        f"CASE WHEN i <= {EXPIRED - 10} THEN 200 ELSE 500 END, {sql.ago(old)}, {sql.ago(old)}, "
        f"CASE WHEN i <= {EXPIRED - 10} THEN {sql.ago(old)} END FROM {series}",
        _attempts_sql(sql, f"'dlv_x{tag}_%'"),
        "INSERT INTO inbound_events (id, source, dedupe_key, type, payload, headers, status, "
        "attempts, received_at, processed_at) SELECT "
        f"'inb_x{tag}_' || i, 'stripe', 'x{tag}_' || i, 'customer.created', {sql.json(EMPTY)}, "
        f"{sql.json(EMPTY)}, CASE WHEN i <= {EXPIRED - 10} THEN 'processed' ELSE 'failed' END, "
        f"1, {sql.ago(old)}, CASE WHEN i <= {EXPIRED - 10} THEN {sql.ago(old)} END FROM {series}",
    ]


@dataclass
class Database:
    """A loaded database: its engine, the time its rows are relative to, what it holds."""

    engine: Engine
    now: datetime
    rows: int  # deliveries
    sql: Sql = field(init=False)

    def __post_init__(self) -> None:
        self.sql = Sql(self.engine.dialect.name)

    def run(self, statements: list[str]) -> None:
        now: Any = self.now if self.sql.pg else self.now.strftime("%Y-%m-%d %H:%M:%S")
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement), {"now": now})

    def scalar(self, statement: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(statement), params).scalar()


def load(url: str, rows: int) -> Database:
    """The database at `url`, its tables rebuilt by the migrations and filled for `rows`
    deliveries; with REUSE, the one a previous run left there if it holds that many."""
    engine = make_engine(url)
    if REUSE:
        with engine.connect() as conn:
            held = conn.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
            created = conn.execute(
                sa.select(subscriptions.c.created_at).where(subscriptions.c.id == "sub_0")
            ).scalar_one()
        if held == rows:  # a run's retention passes delete only what they added
            return Database(engine, created + timedelta(days=100), rows)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        config = Config("alembic.ini")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    db = Database(engine, datetime.now(UTC).replace(microsecond=0), rows)
    started = time.perf_counter()
    db.run(_subscriptions_sql(db.sql))
    db.run(_deliveries_sql(db.sql, rows))
    db.run(_inbound_sql(db.sql, rows))
    db.run(_leads_sql(db.sql, rows // 5))
    if db.sql.pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    emit("scale_load", database=engine.dialect.name, deliveries=rows,
         seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    return db


@dataclass(frozen=True)
class Query:
    """One hot query: `run` calls the store function and returns how many rows it handled;
    `setup` (untimed) puts back what a previous run changed."""

    name: str
    run: Callable[[], int]
    setup: Callable[[], None] = lambda: None


def queries(db: Database) -> list[Query]:
    engine, now = db.engine, db.now
    with engine.connect() as conn:
        due = list(
            conn.execute(
                sa.text(
                    "SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at "
                    "<= :now AND subscription_id NOT IN ('sub_48', 'sub_49') ORDER BY id "
                    f"LIMIT {CLAIM_BATCH}"
                ),
                {"now": now},
            ).scalars()
        )
        logged = conn.execute(
            sa.text("SELECT count(*) FROM deliveries WHERE subscription_id = 'sub_0'")
        ).scalar_one()
        deep = conn.execute(
            sa.text(
                "SELECT id FROM deliveries WHERE subscription_id = 'sub_0' "
                f"ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET {logged - PAGE - 10}"
            )
        ).scalar_one()

    def claim() -> int:
        with engine.connect() as conn, conn.begin() as transaction:
            taken = deliveries.claim(conn, due, now, LEASE)
            transaction.rollback()  # the same rows are claimable again next run
        return len(taken)

    def due_of() -> int:
        with engine.connect() as conn:
            return len(deliveries.due_of(conn, "sub_0", now, CLAIM_BATCH))

    def lost() -> int:
        return len(deliveries.lost(engine, now, REQUEUE_AFTER))

    def unqueue() -> None:  # what the previous run marked enqueued is lost again
        db.run(
            ["UPDATE deliveries SET enqueued_at = NULL WHERE status IN ('pending', 'in_flight')"]
        )

    def page(cursor: str | None, status: str | None = None) -> Callable[[], int]:
        return lambda: len(deliveries.page(engine, "sub_0", status, PAGE, cursor)[0])

    email = f"p{db.rows // 10 + 1}@example.com"
    tags = itertools.count()

    def prune() -> int:
        pruned, finished = retention.prune(engine, now, POLICY)
        assert finished
        return pruned.total

    return [
        Query("claim_batch", claim),
        Query("due_of", due_of),
        Query("sweep_lost", lost, unqueue),
        Query("delivery_log_first_page", page(None)),
        Query("delivery_log_deep_cursor", page(deep)),
        Query("delivery_log_failed", page(None, "failed")),
        Query("inbound_failed", lambda: len(inbound.page(engine, None, "failed", PAGE, None)[0])),
        Query("inbound_all", lambda: len(inbound.page(engine, None, None, PAGE, None)[0])),
        Query("lead_by_email", lambda: len(identity.page(engine, email, None, PAGE, None)[0])),
        Query("leads_newest", lambda: len(identity.page(engine, None, None, PAGE, None)[0])),
        Query("attribution_month", lambda: _attribution(engine, now)),
        Query("retention_pass", prune, lambda: db.run(_expired_sql(db.sql, next(tags)))),
    ]


def _attribution(engine: Engine, now: datetime) -> int:
    start, end = now - timedelta(seconds=MONTH_START), now - timedelta(seconds=MONTH_END)
    report = attribution.report(engine, "linear", start, end)
    return round(sum(c.conversions for c in report.by_source))


@dataclass(frozen=True)
class Timing:
    ms: float
    rows: int


def time_all(db: Database) -> dict[str, Timing]:
    """Each query's median time over REPEATS runs after one warm-up run."""
    timings = {}
    for query in queries(db):
        runs = []
        for _ in range(REPEATS + 1):
            query.setup()
            started = time.perf_counter()
            rows = query.run()
            runs.append((time.perf_counter() - started) * 1000)
        timings[query.name] = Timing(round(statistics.median(runs[1:]), 3), rows)
    return timings


@contextmanager
def explained(engine: Engine, out: list[str]) -> Iterator[None]:
    """Append to `out` the plan of every statement run on `engine` meanwhile, taken just before
    it runs (PostgreSQL: executed for real in a savepoint that is then rolled back)."""
    pg = engine.dialect.name == "postgresql"

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool):
        if many or statement.lstrip().upper().startswith(("BEGIN", "SAVEPOINT", "ROLLBACK")):
            return
        explain = conn.connection.dbapi_connection.cursor()
        if pg:
            explain.execute("SAVEPOINT bench_plan")
            explain.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
            plan = [row[0] for row in explain.fetchall()]
            explain.execute("ROLLBACK TO SAVEPOINT bench_plan")
        else:
            explain.execute("EXPLAIN QUERY PLAN " + statement, params)
            depth: dict[int, int] = {0: 0}
            plan = []
            for node, parent, _, detail in explain.fetchall():
                depth[node] = depth.get(parent, 0) + 1
                plan.append("  " * depth[node] + detail)
        explain.close()
        out.append(" ".join(statement.split()) + "\n" + "\n".join(plan) + "\n")

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def plans(db: Database, label: str) -> str:
    text = []
    for query in queries(db):
        query.setup()
        out: list[str] = []
        with explained(db.engine, out):
            query.run()
        text.append(f"=== {label}: {query.name} ===\n" + "\n".join(out))
    return "\n".join(text)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="apex-scale-"))
    small_url = os.environ.get("BENCH_SCALE_SMALL_URL", f"sqlite:///{folder}/small.db")
    large_url = os.environ.get("BENCH_SCALE_LARGE_URL", f"sqlite:///{folder}/large.db")
    dialect = sa.engine.make_url(large_url).get_backend_name()
    default_rows = 1_000_000 if dialect == "postgresql" else 100_000
    rows = int(os.environ.get("BENCH_SCALE_ROWS", str(default_rows)))
    plans_path = Path(os.environ.get("BENCH_SCALE_PLANS", folder / f"scale_plans_{dialect}.txt"))
    small, large = load(small_url, SMALL), load(large_url, rows)
    timed = {"small": time_all(small), "large": time_all(large)}
    for name, at_small in timed["small"].items():
        at_large = timed["large"][name]
        emit(name, database=dialect, small_ms=at_small.ms, large_ms=at_large.ms,
             ratio=ratio(at_large.ms, at_small.ms), rows=[at_small.rows, at_large.rows],
             deliveries=[SMALL, rows])  # fmt: skip
    plans_path.write_text(plans(small, f"small ({SMALL})") + "\n" + plans(large, f"large ({rows})"))
    emit("scale_plans", path=str(plans_path))
    small.engine.dispose()
    large.engine.dispose()


if __name__ == "__main__":
    main()
