"""The failed-authentication throttle: failures counted per client address in Redis, so every
gunicorn worker and every web host shares one count, and an address over the limit gets 429.

A window opens at an address's first failure and lasts a minute; once `limit` failures are
counted in it, the address is refused until it closes. A refused address is refused whatever key
it sends, the right one included: answering the right key would tell a guesser which guess was
right, leaving guesses unlimited. Each failure is counted in one Redis script that also refuses
it when the limit is already reached, so guesses racing in parallel threads, workers or hosts
get at most `limit` 401 answers per window; the rest get 429 and learn nothing.
Successes are never counted, so a client that authenticates is never refused for its traffic
unless its address has failed `limit` times.
Redis being unreachable never refuses anyone (the throttle fails open) and never raises.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time

from flask import Flask, Response, current_app, request
from redis import Redis
from redis.exceptions import RedisError

from apex.api.errors import handle_apex_error
from apex.api.runtime import Runtime
from apex.errors import TooManyRequestsError

log = logging.getLogger("apex.api.throttle")

WINDOW_SECONDS = 60
KEY_PREFIX = "apex:auth-failures:"
# After a Redis error, skip Redis this long: a hung Redis would otherwise add its socket timeout
# to every authenticated request. Failures in that time are not counted.
PAUSE_AFTER_ERROR = 5.0
EXTENSION = "apex.auth_throttle"
WINDOW_MS = WINDOW_SECONDS * 1000

# KEYS[1]: the address's count; ARGV: limit, window (ms). Returns {1 if counted else 0, pttl}.
# A count without an expiry (never left by this script) gets one, so no window lasts forever.
COUNT_FAILURE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local counted = 0
if count < tonumber(ARGV[1]) then
  redis.call('INCR', KEYS[1])
  counted = 1
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  pttl = tonumber(ARGV[2])
end
return {counted, pttl}
"""


def too_many(pttl: int) -> TooManyRequestsError:
    """The 429 for an address whose window closes in `pttl` ms (-1, -2: as if just opened)."""
    retry_after = math.ceil(pttl / 1000) if pttl > 0 else WINDOW_SECONDS
    return TooManyRequestsError(
        f"Too many failed authentications from this address: retry in {retry_after} s",
        retry_after=max(retry_after, 1),
    )


class AuthThrottle:
    """Counts failed authentications per client address; `limit` failures per window, 0: off."""

    def __init__(self, redis: Redis, limit: int, pause: float = PAUSE_AFTER_ERROR) -> None:
        self.redis = redis
        self.limit = limit
        self.pause = pause
        self._paused_until = 0.0
        self._lock = threading.Lock()  # one log line per state change across worker threads
        self._down_since: float | None = None
        self._reported_at = 0.0
        self._count = redis.register_script(COUNT_FAILURE)

    def refuse_if_over(self, address: str) -> None:
        """Raises TooManyRequestsError (with the seconds until the window closes) when `address`
        has failed `limit` times in its window. Never raises anything else."""
        if not self._active():
            return
        key = KEY_PREFIX + address
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                count, pttl = pipe.execute()
        except RedisError as exc:
            self._pause(exc)
            return
        self._recovered()
        if count is None or int(count) < self.limit:
            return
        raise too_many(int(pttl))

    def record_failure(self, address: str) -> None:
        """Count one failed authentication of `address`. Raises TooManyRequestsError, without
        counting it, when `limit` failures are already counted (another request counted the last
        one since refuse_if_over): check and count are one step in Redis. Never raises anything
        else."""
        if not self._active():
            return
        try:
            counted, pttl = self._count(keys=[KEY_PREFIX + address], args=[self.limit, WINDOW_MS])
        except RedisError as exc:
            self._pause(exc)
            return
        self._recovered()
        if not counted:
            raise too_many(int(pttl))

    def _active(self) -> bool:
        return self.limit > 0 and time.monotonic() >= self._paused_until

    def _pause(self, exc: RedisError) -> None:
        """Stop asking Redis for a while; log that it is down, then every minute it stays so."""
        now = time.monotonic()
        with self._lock:
            self._paused_until = now + self.pause
            if self._down_since is None:
                self._down_since = self._reported_at = now
                log.warning(
                    "auth throttle: Redis unreachable (%s), not throttling until it is back",
                    type(exc).__name__,
                )
            elif now - self._reported_at >= 60:
                self._reported_at = now
                log.warning(
                    "auth throttle: Redis still unreachable after %.0f s (%s), not throttling",
                    now - self._down_since,
                    type(exc).__name__,
                )

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is not None:
                log.info(
                    "auth throttle: Redis reachable again after %.0f s, throttling",
                    time.monotonic() - self._down_since,
                )
                self._down_since = None


def client_address() -> str:
    """The address failures are counted under: the peer after ProxyFix (APEX_TRUSTED_PROXIES
    hops). An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) counts as its IPv4 address; other IPv6
    addresses count per /64, the block one subscriber usually holds; anything unparsable shares
    one count."""
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return "unknown"
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def auth_throttle() -> AuthThrottle:
    throttle: AuthThrottle = current_app.extensions[EXTENSION]
    return throttle


def _render_too_many(exc: TooManyRequestsError) -> Response:
    response = handle_apex_error(exc)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def init_throttle(app: Flask) -> None:
    """Give `app` (created by create_app) its throttle and the 429's Retry-After header."""
    rt: Runtime = app.extensions["apex"]
    app.extensions[EXTENSION] = AuthThrottle(rt.redis, rt.settings.auth_failures_per_minute)
    app.register_error_handler(TooManyRequestsError, _render_too_many)
