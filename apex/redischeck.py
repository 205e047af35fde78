"""What the Redis a process is given must be, checked at boot by web, worker and scheduler: its
certificate verifies, it takes the credentials, and it never evicts keys (queued work)."""

from __future__ import annotations

import logging
import ssl

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
        check(redis)
    except RedisUnfitError as exc:
        raise SystemExit(f"{process}: {exc}") from None
    finally:
        redis.close()


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
