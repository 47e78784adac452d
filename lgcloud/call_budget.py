"""Counting our calls to LG, and backing off a user LG says is calling too often.

LG does not publish its rate limits; the one thing we learn is ``1306
EXCEEDED_API_CALLS`` (or an HTTP 429). So every ThinQ and placement request goes
through a :class:`CallBudget` (``lgcloud.thinq.send_thinq_request``), which

* counts it by service id, user, endpoint template (``GET /devices/{id}``) and LG
  result code (``ok`` on success, LG's four-digit code on failure, ``http_<status>``
  for an answer without LG's envelope, ``timeout`` / ``transport`` when no answer came);
  every HTTP request counts once, so retries count too: LG sees them;
* after 1306 or 429 backs that user off (on that service): for 30 s, doubling with
  each further 1306 up to 15 min, back to 30 s after a successful call. A 1306 that
  arrives while the user is already backed off (calls that were in flight) does not
  escalate it. During a backoff a call of that user raises
  :class:`~lgcloud.errors.RateLimited` at once, without calling LG (the user hears
  "LG is busy"); such calls are counted apart, as *held back*.

Users are named only by a short digest: of the LG user number when the caller knows
it (``ThinQAuth.user``), otherwise of the bearer token (``t-…``). Tokens never reach a
label, a key or a log line.

Backends: in-process (the default), or Redis (``redis_url``) so that every process
shares the counts and the backoffs. Keys live under ``<prefix>:lgcalls:``: a hash of
totals, one hash per minute of calls per user (kept 10 minutes), a hash of held-back
calls, a sorted set of backoffs (score: until when) and a level key per user that
expires an hour after its last 1306. Redis failing never fails an LG call: the budget
counts and backs off in this process meanwhile (logged once per outage, tried again
after a few seconds), and its snapshot adds those local counts to Redis's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lgcloud.errors import RateLimited

logger = logging.getLogger(__name__)

OK = "ok"
TIMEOUT = "timeout"
TRANSPORT = "transport"
EXCEEDED_API_CALLS = "1306"
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_MAX_SECONDS = 15 * 60.0
MINUTE_BUCKETS_KEPT = 10  # minutes of per-user buckets kept (in Redis: their TTL)
LEVEL_TTL_SECONDS = 3600  # a user's backoff level is forgotten an hour after its last 1306
TOTALS_TTL_SECONDS = 30 * 86400  # refreshed by every call: gone only after a month idle
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.5

# Path segments kept in an endpoint template; any other segment is an id ("{id}").
_STATIC_SEGMENTS = frozenset(
    {"devices", "profile", "push", "pcc", "event", "v2", "users"}
    # BECON Connect (/tms/v1.0/connect/...): site codes, gateway and facility ids are ids.
    | {"tms", "v1.0", "connect", "auth", "servertime", "token", "site", "gw", "facilities"}
    | {"facility", "state"}
)
# BECON authenticates our service, not a person: its calls are counted under this label.
BECON_USER_LABEL = "service"

Who = tuple[str, str]  # (service id, user label)
CallKey = tuple[str, str, str, str]  # (service id, user label, endpoint, code)


def user_label(user: str | None, token: str | None = None) -> str:
    """A short, stable digest naming an LG user in counts and logs: ``u-…`` from the
    user number, ``t-…`` from the bearer token when the user number is not known."""
    if user:
        return "u-" + hashlib.sha256(f"thinq-user:{user}".encode()).hexdigest()[:12]
    return "t-" + hashlib.sha256(f"thinq-token:{token or ''}".encode()).hexdigest()[:12]


def endpoint_template(method: str, path: str) -> str:
    """``GET /devices/{id}`` for ``GET /devices/7f3a…``: ids never become label values."""
    segments = [
        s if not s or s in _STATIC_SEGMENTS or s.endswith("-async") else "{id}"
        for s in path.split("?", 1)[0].split("/")
    ]
    return f"{method.upper()} {'/'.join(segments)}"


def backoff_seconds(level: int, base: float, ceiling: float) -> float:
    """The backoff after the ``level``-th 1306 in a row (1: ``base``)."""
    return min(base * 2 ** min(max(level, 1) - 1, 32), ceiling)


@dataclass
class Snapshot:
    """What the metrics endpoint shows; ``calls`` are totals since counting began."""

    calls: dict[CallKey, int] = field(default_factory=dict)
    last_minute: dict[Who, float] = field(default_factory=dict)  # sliding 60 s estimate
    held_back: dict[Who, int] = field(default_factory=dict)
    backoffs: dict[Who, float] = field(default_factory=dict)  # active ones: until when
    now: float = 0.0
    backend: str = "memory"
    redis_up: bool | None = None  # None without Redis

    def merge(self, other: Snapshot) -> None:
        for key, n in other.calls.items():
            self.calls[key] = self.calls.get(key, 0) + n
        for who, rate in other.last_minute.items():
            self.last_minute[who] = self.last_minute.get(who, 0.0) + rate
        for who, n in other.held_back.items():
            self.held_back[who] = self.held_back.get(who, 0) + n
        for who, until in other.backoffs.items():
            self.backoffs[who] = max(until, self.backoffs.get(who, 0.0))


def _sliding(current: int, previous: int, now: float) -> float:
    """Calls in the last 60 s, estimated from this minute's and the previous one's buckets."""
    elapsed = (now % 60) / 60
    return current + previous * (1 - elapsed)


class _Memory:
    """Counts and backoffs in this process (the default, and Redis's stand-in when down)."""

    def __init__(self) -> None:
        self.totals: Counter[CallKey] = Counter()
        self.minutes: dict[int, Counter[Who]] = {}
        self.held: Counter[Who] = Counter()
        self.levels: dict[Who, int] = {}
        self.until: dict[Who, float] = {}

    def blocked_until(self, who: Who, now: float) -> float | None:
        until = self.until.get(who)
        if until is None:
            return None
        if until <= now:
            del self.until[who]
            return None
        return until

    def record(self, key: CallKey, now: float) -> None:
        self.totals[key] += 1
        minute = int(now // 60)
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = Counter()
            for old in [m for m in self.minutes if m <= minute - MINUTE_BUCKETS_KEPT]:
                del self.minutes[old]
        bucket[key[:2]] += 1

    def hold(self, who: Who) -> None:
        self.held[who] += 1

    def limited(self, who: Who, now: float, base: float, ceiling: float) -> tuple[int, float]:
        """Back ``who`` off; (0, until) when a backoff was already running."""
        running = self.blocked_until(who, now)
        if running is not None:
            return 0, running
        level = self.levels.get(who, 0) + 1
        self.levels[who] = level
        until = now + backoff_seconds(level, base, ceiling)
        self.until[who] = until
        return level, until

    def succeeded(self, who: Who) -> None:
        self.levels.pop(who, None)

    def snapshot(self, now: float) -> Snapshot:
        minute = int(now // 60)
        current = self.minutes.get(minute, Counter())
        previous = self.minutes.get(minute - 1, Counter())
        return Snapshot(
            calls=dict(self.totals),
            last_minute={
                who: _sliding(current[who], previous[who], now)
                for who in set(current) | set(previous)
            },
            held_back=dict(self.held),
            backoffs={who: u for who, u in self.until.items() if u > now},
            now=now,
        )


# Back a user off unless a backoff is running: INCR their level, ZADD until when.
_LIMITED_LUA = """
local now = tonumber(ARGV[2])
local running = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
if running > now then return {'0', tostring(running)} end
local level = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(level - 1, 32), tonumber(ARGV[4]))
local until_ = now + delay
redis.call('ZADD', KEYS[1], until_, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400)
redis.call('EXPIRE', KEYS[1], 86400)
return {tostring(level), tostring(until_)}
"""


class _Redis:
    """The same operations on shared Redis keys; every method may raise."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._base = f"{prefix}:lgcalls"
        self._limited_script = self._client.register_script(_LIMITED_LUA)

    def _key(self, *parts: str) -> str:
        return ":".join((self._base, *parts))

    async def close(self) -> None:
        await self._client.close()

    async def blocked_until(self, who: Who, now: float) -> float | None:
        until = await self._client.zscore(self._key("backoffs"), json.dumps(who))
        return float(until) if until is not None and float(until) > now else None

    async def record(self, key: CallKey, now: float, succeeded: bool) -> None:
        minute_key = self._key("minute", str(int(now // 60)))
        totals = self._key("totals")
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hincrby(totals, json.dumps(key), 1)
            pipe.expire(totals, TOTALS_TTL_SECONDS)
            pipe.hincrby(minute_key, json.dumps(key[:2]), 1)
            pipe.expire(minute_key, MINUTE_BUCKETS_KEPT * 60)
            if succeeded:
                pipe.delete(self._level_key(key[:2]))
            await pipe.execute()

    async def hold(self, who: Who) -> None:
        held = self._key("held")
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hincrby(held, json.dumps(who), 1)
            pipe.expire(held, TOTALS_TTL_SECONDS)
            await pipe.execute()

    def _level_key(self, who: Who) -> str:
        return self._key("level", hashlib.sha256(json.dumps(who).encode()).hexdigest()[:24])

    async def limited(self, who: Who, now: float, base: float, ceiling: float) -> tuple[int, float]:
        level, until = await self._limited_script(
            keys=[self._key("backoffs"), self._level_key(who)],
            args=[json.dumps(who), repr(now), repr(base), repr(ceiling), LEVEL_TTL_SECONDS],
        )
        return int(level), float(until)

    async def snapshot(self, now: float) -> Snapshot:
        minute = int(now // 60)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._key("totals"))
            pipe.hgetall(self._key("minute", str(minute)))
            pipe.hgetall(self._key("minute", str(minute - 1)))
            pipe.hgetall(self._key("held"))
            pipe.zrangebyscore(self._key("backoffs"), f"({now!r}", "+inf", withscores=True)
            totals, current, previous, held, backoffs = await pipe.execute()
        current_by = {_who(k): int(v) for k, v in current.items()}
        previous_by = {_who(k): int(v) for k, v in previous.items()}
        return Snapshot(
            calls={tuple(json.loads(k)): int(v) for k, v in totals.items()},  # type: ignore[misc]
            last_minute={
                who: _sliding(current_by.get(who, 0), previous_by.get(who, 0), now)
                for who in set(current_by) | set(previous_by)
            },
            held_back={_who(k): int(v) for k, v in held.items()},
            backoffs={_who(member): float(score) for member, score in backoffs},
            now=now,
            backend="redis",
            redis_up=True,
        )


def _who(raw: bytes | str) -> Who:
    service, user = json.loads(raw)
    return str(service), str(user)


class CallBudget:
    """Counts LG calls and backs off rate-limited users; share one per process.

    ``redis_url`` None keeps everything in this process. ``clock`` (wall-clock seconds,
    shared by the processes using one Redis) is for tests.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = "lgconn",
        *,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
        backoff_max_seconds: float = BACKOFF_MAX_SECONDS,
        clock: Callable[[], float] = time.time,
        redis_retry_seconds: float = REDIS_RETRY_SECONDS,
    ) -> None:
        if backoff_base_seconds <= 0 or backoff_max_seconds < backoff_base_seconds:
            raise ValueError("backoff needs 0 < base <= max seconds")
        self._base = backoff_base_seconds
        self._ceiling = backoff_max_seconds
        self._clock = clock
        self._memory = _Memory()
        self._redis = _Redis(redis_url, prefix) if redis_url else None
        self._retry_seconds = redis_retry_seconds
        self._redis_down_until = 0.0  # monotonic; Redis is skipped until then
        self._redis_down = False

    def __repr__(self) -> str:
        return f"CallBudget(backend={'redis' if self._redis else 'memory'})"

    async def aclose(self) -> None:
        if self._redis is not None:
            try:
                await self._redis.close()
            except Exception:  # closing a broken connection must not fail shutdown
                pass

    # --- around each request (lgcloud.thinq.send_thinq_request) -------------------------------

    async def before_call(self, service_id: str, user: str) -> None:
        """Raise :class:`RateLimited` if ``user`` is backed off on ``service_id``."""
        who = (service_id, user)
        now = self._clock()
        until = self._memory.blocked_until(who, now)
        redis = self._usable()
        if redis is not None:
            try:
                shared = await redis.blocked_until(who, now)
                self._redis_ok()
            except Exception as error:
                self._redis_failed(error)
                shared = None
            if shared is not None:
                until = max(until or 0.0, shared)
        if until is None:
            return
        await self._run(lambda r: r.hold(who), lambda: self._memory.hold(who))
        logger.debug("held back an LG call of user %s: backing off %.0f s more", user, until - now)
        raise RateLimited(
            EXCEEDED_API_CALLS,
            f"not calling LG: this user is backed off for {until - now:.0f} s more "
            "after EXCEEDED_API_CALLS",
        )

    async def after_call(
        self, service_id: str, user: str, endpoint: str, code: str, *, http_status: int | None
    ) -> None:
        """Count one request LG was sent; back the user off if it was rate-limited.

        Never raises: counting must not fail a call that LG has answered.
        """
        who = (service_id, user)
        key: CallKey = (service_id, user, endpoint, code)
        now = self._clock()
        limited = code == EXCEEDED_API_CALLS or http_status == 429
        succeeded = code == OK
        try:
            await self._run(
                lambda r: r.record(key, now, succeeded), lambda: self._memory.record(key, now)
            )
            if succeeded:
                self._memory.succeeded(who)
            if limited:
                level, until = await self._run(
                    lambda r: r.limited(who, now, self._base, self._ceiling),
                    lambda: self._memory.limited(who, now, self._base, self._ceiling),
                )
                if level:
                    logger.warning(
                        "LG rate limit (%s) for user %s on service %s: holding their calls "
                        "back for %.0f s (backoff %d)",
                        code if code == EXCEEDED_API_CALLS else "HTTP 429",
                        user,
                        service_id,
                        until - now,
                        level,
                    )
        except Exception:  # a bug here must not turn LG's answer into a failure
            logger.exception("counting an LG call failed")

    async def snapshot(self) -> Snapshot:
        """Counts and active backoffs: Redis's (every process) plus any counted here
        while Redis was down; without Redis, this process's."""
        now = self._clock()
        local = self._memory.snapshot(now)
        if self._redis is None:
            return local
        redis = self._usable()
        if redis is not None:
            try:
                shared = await redis.snapshot(now)
                self._redis_ok()
                shared.merge(local)
                return shared
            except Exception as error:
                self._redis_failed(error)
        local.backend = "redis"
        local.redis_up = False
        return local

    # --- Redis with an in-process fallback ----------------------------------------------------

    def _usable(self) -> _Redis | None:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return None
        return self._redis

    async def _run(self, shared: Callable[[_Redis], Any], local: Callable[[], Any]) -> Any:
        redis = self._usable()
        if redis is not None:
            try:
                result = await shared(redis)
            except Exception as error:
                self._redis_failed(error)
            else:
                self._redis_ok()
                return result
        return local()

    def _redis_failed(self, error: Exception) -> None:
        self._redis_down_until = time.monotonic() + self._retry_seconds
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "Redis unavailable for LG call counting (%s): counting and backing off in "
                "this process until it is back",
                type(error).__name__,
            )

    def _redis_ok(self) -> None:
        if self._redis_down:
            self._redis_down = False
            logger.info("Redis is back for LG call counting")


# --- Prometheus text exposition (format 0.0.4) --------------------------------------------------

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


class MetricsText:
    """Builds one exposition: ``family`` once per metric name, then its samples."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        self._lines.append(f"{name}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def add_budget_metrics(out: MetricsText, snapshot: Snapshot) -> None:
    out.family(
        "lg_calls_total",
        "counter",
        "Requests sent to LG ThinQ, by service id, user digest, endpoint template and result "
        "code (ok, LG's code, http_<status>, timeout, transport).",
    )
    for (service, user, endpoint, code), n in sorted(snapshot.calls.items()):
        out.sample("lg_calls_total", n, service=service, user=user, endpoint=endpoint, code=code)
    out.family(
        "lg_calls_last_minute",
        "gauge",
        "Requests sent to LG in the last 60 s per service and user (sliding estimate).",
    )
    for (service, user), rate in sorted(snapshot.last_minute.items()):
        out.sample("lg_calls_last_minute", rate, service=service, user=user)
    out.family(
        "lg_calls_held_back_total",
        "counter",
        "Calls not sent to LG because their user was backed off after 1306 or 429.",
    )
    for (service, user), n in sorted(snapshot.held_back.items()):
        out.sample("lg_calls_held_back_total", n, service=service, user=user)
    out.family(
        "lg_backoff_active",
        "gauge",
        "1 while a user is backed off after LG's 1306 EXCEEDED_API_CALLS (or HTTP 429).",
    )
    for (service, user), _until in sorted(snapshot.backoffs.items()):
        out.sample("lg_backoff_active", 1, service=service, user=user)
    out.family("lg_backoff_remaining_seconds", "gauge", "Seconds left of a user's active backoff.")
    for (service, user), until in sorted(snapshot.backoffs.items()):
        out.sample(
            "lg_backoff_remaining_seconds",
            max(0.0, until - snapshot.now),
            service=service,
            user=user,
        )
    if snapshot.redis_up is not None:
        out.family(
            "lg_call_budget_redis_up",
            "gauge",
            "1 when the shared (Redis) call counts could be read; 0: this process's only.",
        )
        out.sample("lg_call_budget_redis_up", 1 if snapshot.redis_up else 0)
