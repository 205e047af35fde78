"""Group commit: the writes of concurrent callers in one process, in one transaction.

Each web request that accepts an inbound webhook inserts a row or a few and commits. On SQLite
every commit takes the one write lock and syncs the log (apex.writelock, apex.db), so
a thousand small transactions a second spend most of their time queueing for it. Here a caller
hands its item over and waits; whichever caller finds nobody writing becomes the leader: it
begins a transaction (waiting for the lock, while other callers' items pile up), takes every
item waiting by then, writes them with one `write` call and commits, then hands each caller
its result. A caller alone is written at once, on its own, as before: nothing waits for a
batch to fill.

Nothing is acknowledged before its commit. When a batch of several fails, each of its items
is written again in a transaction of its own, so one bad item fails only its own caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

T = TypeVar("T")
R = TypeVar("R")

MOST = 64  # items in one transaction at most


@dataclass(eq=False)
class _Waiting(Generic[T, R]):
    item: T
    done: bool = False
    alone: bool = False  # its batch failed: written again on its own
    result: R | None = None
    error: BaseException | None = field(default=None, repr=False)


class GroupCommit(Generic[T, R]):
    """`write(conn, items)` stores `items` in the transaction of `conn` and returns a result
    per item, in order; it must not commit."""

    def __init__(
        self, engine: Engine, write: Callable[[Connection, Sequence[T]], list[R]], most: int = MOST
    ) -> None:
        self._engine = engine
        self._write = write
        self._most = most
        self._cond = threading.Condition()
        self._queue: list[_Waiting[T, R]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        """Write `item` (with whatever else is waiting) and return its result once committed;
        raises what writing it raised."""
        mine: _Waiting[T, R] = _Waiting(item)
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                while not mine.done and self._leading:
                    self._cond.wait()
                if mine.done:
                    break
                self._leading = True
            self._lead(mine)
        if mine.alone:
            return self._alone(item)
        if mine.error is not None:
            raise mine.error
        return mine.result  # type: ignore[return-value]  # set with done, error unset

    def _lead(self, mine: _Waiting[T, R]) -> None:
        """Write what waits (up to `most`, `mine` among them unless more waited before it)."""
        batch: list[_Waiting[T, R]] = []
        try:
            with self._engine.begin() as conn:  # others queue while this waits for the lock
                with self._cond:
                    batch, self._queue = self._queue[: self._most], self._queue[self._most :]
                results = self._write(conn, [w.item for w in batch])
            for waiting, result in zip(batch, results, strict=True):
                waiting.result = result
        except BaseException as exc:
            if not batch:  # no transaction to be had: this caller's own item fails
                with self._cond:
                    self._queue.remove(mine)
                batch = [mine]
            for waiting in batch:
                waiting.alone = len(batch) > 1
                waiting.error = exc
        finally:
            with self._cond:
                for waiting in batch:
                    waiting.done = True
                self._leading = False
                self._cond.notify_all()

    def _alone(self, item: T) -> R:
        with self._engine.begin() as conn:
            return self._write(conn, [item])[0]
