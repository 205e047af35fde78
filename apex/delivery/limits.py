"""Per-endpoint limits that hold across worker processes and hosts, kept in Redis.

Concurrency: a subscription's requests in flight are members of a sorted set scored by when
they expire. A slot is taken only while fewer than the limit are live; a worker that dies
holding slots loses them when they expire (the request timeout plus a margin), and a worker
that goes on sending in the same slot renews it first.

Rate: a generic cell rate algorithm (GCRA) per subscription: requests start at least
1/rate seconds apart, over all workers, with no burst. The key holds the theoretical arrival
time of the next request; it expires once that time has passed.

Both are one Lua script each, so a check and its update are atomic."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from redis import Redis

# KEYS[1] slots (zset token -> expiry ms), KEYS[2] the rate's next time (ms);
# ARGV: token, limit, slot ttl ms, rate (per second, 0: none).
# Returns 0 when the slot is taken, else the milliseconds to wait before trying again.
_ACQUIRE = """
local now = _now()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, math.min(tonumber(first[2]) - now, 1000))
end
local rate = tonumber(ARGV[4])
if rate > 0 then
  local wait = _rate(KEYS[2], now, rate)
  if wait > 0 then return wait end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""

# KEYS[1] slots, KEYS[2] rate; ARGV: token, slot ttl ms, rate. The slot must be held;
# returns 0 when it is renewed (and the rate allows the next request), -1 when the slot is no
# longer held (it expired), else the milliseconds to wait for the rate.
_RENEW = """
local now = _now()
local expires = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expires or tonumber(expires) <= now then return -1 end
local rate = tonumber(ARGV[3])
if rate > 0 then
  local wait = _rate(KEYS[2], now, rate)
  if wait > 0 then return wait end
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 0
"""

# _now: Redis's clock in milliseconds. _rate: the next request may start at the key's time (or
# now if it has passed); taking it moves the time one interval on. Returns 0 when taken, else
# the milliseconds until it may be.
_RATE = """
local function _now()
  local t = redis.call('TIME')  -- one clock for every worker: Redis's
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function _rate(key, now, rate)
  local interval = 1000 / rate
  local next_at = tonumber(redis.call('GET', key) or now)
  if next_at > now then return math.ceil(next_at - now) end
  redis.call('SET', key, now + interval, 'PX', math.ceil(interval) + 1)
  return 0
end
"""


# A slot renewed this recently still covers a whole attempt started now (its TTL is an attempt's
# bound plus this), so a lane sending back to back renews it about once a second, not per request.
RENEW_EVERY = 1.0


@dataclass
class Slot:
    subscription_id: str
    token: str
    renewed: float = field(default_factory=time.monotonic)  # when its expiry was last set


@dataclass(frozen=True)
class Wait:
    seconds: float  # try again after this


class EndpointLimits:
    """The limiter of one process; `slot_ttl` is how long a slot outlives a silent holder: at
    least the longest attempt plus RENEW_EVERY."""

    def __init__(self, redis: Redis, slot_ttl: float) -> None:
        self._redis = redis
        self._ttl_ms = int(slot_ttl * 1000)
        self._acquire = redis.register_script(_RATE + _ACQUIRE)
        self._renew = redis.register_script(_RATE + _RENEW)

    @staticmethod
    def _keys(subscription_id: str) -> list[str]:
        return [f"apex:endpoint:{subscription_id}:slots", f"apex:endpoint:{subscription_id}:rate"]

    def acquire(self, subscription_id: str, limit: int, rate: int | None) -> Slot | Wait:
        """A slot for one request to `subscription_id`, or how long to wait for one."""
        token = uuid.uuid4().hex
        args: list[str | int] = [token, limit, self._ttl_ms, rate or 0]
        wait = int(self._acquire(keys=self._keys(subscription_id), args=args))
        return Slot(subscription_id, token) if wait == 0 else Wait(wait / 1000)

    def renew(self, slot: Slot, rate: int | None) -> bool | Wait:
        """Keep `slot` for one more request: True, or a Wait for the rate, or False if the
        slot was lost (it expired: another worker may hold it now). Without a rate, a slot
        renewed within RENEW_EVERY is kept without asking Redis."""
        if not rate and time.monotonic() - slot.renewed < RENEW_EVERY:
            return True
        renewing = time.monotonic()
        args: list[str | int] = [slot.token, self._ttl_ms, rate or 0]
        wait = int(self._renew(keys=self._keys(slot.subscription_id), args=args))
        if wait == 0:
            slot.renewed = renewing
        return True if wait == 0 else False if wait < 0 else Wait(wait / 1000)

    def release(self, slot: Slot) -> None:
        self._redis.zrem(self._keys(slot.subscription_id)[0], slot.token)

    def in_flight(self, subscription_id: str) -> int:
        """Live slots of `subscription_id` now (for tests and the console)."""
        seconds, micros = self._redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        return int(self._redis.zcount(self._keys(subscription_id)[0], f"({now}", "+inf"))
