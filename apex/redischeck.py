"""What the Redis a process is given must be, checked at boot by web, worker and scheduler: its
certificate verifies, it takes the credentials, and it never evicts keys (queued work)."""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError, ResponseError

log = logging.getLogger("apex.redis")

SAFE_POLICY = "noeviction"
FIX_POLICY = (
    "set it to noeviction (Heroku: heroku redis:maxmemory --policy noeviction; "
    "elsewhere CONFIG SET maxmemory-policy noeviction or the provider's setting)"
)
FIX_CERTIFICATE = (
    "set APEX_REDIS_CA_FILE to the CA that signed it, or APEX_REDIS_TLS_VERIFY=0 for a "
    "self-signed one (Heroku Redis)"
)


class RedisUnfitError(Exception):
    """Redis answers but must not be used as it is; the message (one line) says how to fix it."""


def check(redis: Redis) -> None:
    """Raise RedisUnfitError when Redis's TLS certificate does not verify, it refuses the
    credentials, or its maxmemory-policy may evict keys (anything but noeviction). The policy is
    read with CONFIG GET, else (managed Redis often renames CONFIG) from INFO memory. Logs a
    warning and returns when the policy cannot be read or Redis cannot be reached: the process
    starts and waits an outage out as usual."""
    try:
        policy = _policy(redis)
    except AuthenticationError as exc:
        raise RedisUnfitError(f"Redis refused the credentials in REDIS_URL ({exc})") from None
    except RedisError as exc:
        failure = _certificate_failure(exc)
        if failure is not None:
            raise RedisUnfitError(
                f"Redis's TLS certificate did not verify ({failure}): {FIX_CERTIFICATE}"
            ) from None
        log.warning("Redis not checked at boot (%s); its maxmemory-policy must be noeviction", exc)
        return
    if policy is None:
        log.warning(
            "Redis's maxmemory-policy cannot be read (CONFIG and INFO hide it); it must be "
            "noeviction, or queued work may be evicted"
        )
    elif policy != SAFE_POLICY:
        raise RedisUnfitError(
            f"Redis's maxmemory-policy is {policy}, which may evict queued work: {FIX_POLICY}"
        )


def check_at_boot(url: str, process: str) -> None:
    """Check the Redis at `url` (see check) over a connection of its own. An unfit Redis stops
    the boot: SystemExit with one line, "<process>: <what and how to fix>"."""
    redis = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        with _stop_passed_on():
            check(redis)
    except RedisUnfitError as exc:
        raise SystemExit(f"{process}: {exc}") from None
    finally:
        redis.close()


class _StopRequested(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PASS_ON_WITHIN = 30.0  # seconds to wait for the process's own handlers, then send it anyway


@contextmanager
def _stop_passed_on() -> Iterator[None]:
    """A SIGTERM or SIGINT while the check waits on a silent Redis ends the check at once, and
    is sent again once the process has installed its own handler for it (the worker's and the
    scheduler's graceful stop come after the check), so a stop at boot is as clean as later."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; the stop reaches the caller's as usual
        return
    previous: dict[int, Any] = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise _StopRequested(signum)

    stopped: int | None = None
    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)
    try:
        yield
    except _StopRequested as stop:
        stopped = stop.signum
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stopped is not None:  # with the handlers restored, so the watcher sees them
        log.info("stop requested during the Redis boot check; the check is skipped")
        threading.Thread(
            target=_send_once_handled,
            args=(stopped, previous[stopped]),
            name="pass-on-stop",
            daemon=True,
        ).start()


def _send_once_handled(signum: int, handler_before: Any) -> None:
    deadline = time.monotonic() + PASS_ON_WITHIN
    while signal.getsignal(signum) is handler_before and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(os.getpid(), signum)


def _policy(redis: Redis) -> str | None:
    try:
        found = redis.config_get("maxmemory-policy").get("maxmemory-policy")
    except ResponseError:  # CONFIG renamed or disabled
        found = None
    if found is None:
        try:
            found = redis.info("memory").get("maxmemory_policy")
        except ResponseError:  # INFO renamed or disabled too
            return None
    return None if found is None else str(found)


def _certificate_failure(exc: BaseException) -> str | None:
    """The verification message of a certificate failure behind `exc` (redis-py keeps it as
    the context of its ConnectionError), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or seen)
        seen = seen.__cause__ or seen.__context__
    return None
