"""Keyset pagination, newest first: a page is `limit` rows after the cursor (the id of the last
row shown), ordered by (time, id) descending so rows with equal times keep a stable order."""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from apex.errors import NotFoundError

S = TypeVar("S", bound=sa.Select[Any])


def newest_first(
    conn: Connection, query: S, time: sa.Column[Any], id_: sa.Column[Any], limit: int,
    cursor: str | None,
) -> S:  # fmt: skip
    """`query` ordered newest first, limited to one row more than `limit` (to tell whether
    another page follows), starting after `cursor`. Raises NotFoundError for an unknown cursor."""
    query = query.order_by(time.desc(), id_.desc()).limit(limit + 1)
    if cursor is None:
        return query
    anchor = conn.execute(sa.select(time, id_).where(id_ == cursor)).one_or_none()
    if anchor is None:
        raise NotFoundError(f"Unknown cursor {cursor}")
    after = sa.or_(time < anchor[0], sa.and_(time == anchor[0], id_ < anchor[1]))
    return query.where(after)


T = TypeVar("T")


def split_page(rows: list[T], limit: int, id_of: Any) -> tuple[list[T], str | None]:
    """The rows of this page, and the cursor of the next (None on the last page)."""
    page = rows[:limit]
    return page, (id_of(page[-1]) if len(rows) > limit and page else None)
