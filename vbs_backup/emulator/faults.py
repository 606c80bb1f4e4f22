"""Chaos for the gateway: fault rules per operation, and a token-bucket rate limiter (reference §5f).

A `FaultRule` names an operation (`"vbs.create_backup"`, or `"*"` for all) and what happens to a matching
request: `error` (answer with a status and error body without running the operation), `latency` (wait, then
run it), `drop_before` (close the connection without running it) or `drop_after` (run it, then close the
connection so the caller loses the response). Each rule has its own `random.Random(seed)`, so a run with
`probability < 1` is reproducible, and an optional `count` after which it retires (LocalStack's chaos API
is the model).

The `RateLimiter` is about real request rates, so it reads a monotonic clock (injectable for tests), never
the emulator's virtual clock. The gateway has one global `RateLimiter` and an `AccountRateLimits`: one
bucket per account (Huawei's "domain", which owns several projects), shared by every project of that account,
as the real gateway's per-account throttling is.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import CinderError, CloudApiError, EmulatorError, GatewayError, KeystoneError

FaultKind = Literal["error", "latency", "drop_before", "drop_after"]
Shape = Literal["auto", "gateway", "cloud", "cinder", "keystone"]

# Native Cinder-style VBS paths answer errors as {"badRequest": ...} (reference §5e); so does Nova.
_CINDER_OPERATIONS = {
    "vbs.create_native_backup",
    "vbs.list_backups",
    "vbs.list_backup_details",
    "vbs.get_backup",
    "vbs.delete_backup",
    "vbs.restore_native_backup",
    "ecs.list_volume_attachments",
}


@dataclass
class FaultRule:
    operation: str = "*"
    kind: FaultKind = "error"
    status: int = 503
    code: str | None = None
    message: str | None = None
    probability: float = 1.0
    count: int | None = None  # how many more times it fires; None = forever
    latency: float = 0.0  # seconds, for kind="latency"
    seed: int | None = None
    shape: Shape = "auto"  # which wire shape an error takes; "auto" = the operation's own family
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("error", "latency", "drop_before", "drop_after"):
            raise ValueError(f"kind must be error, latency, drop_before or drop_after, not {self.kind!r}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (or null for forever)")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        self.rng = random.Random(self.seed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        allowed = {
            "operation",
            "kind",
            "status",
            "code",
            "message",
            "probability",
            "count",
            "latency",
            "seed",
        }
        allowed.add("shape")
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault rule keys: {', '.join(sorted(unknown))}")
        return cls(**data)

    def matches(self, operation: str | None) -> bool:
        return self.operation == "*" or self.operation == operation

    def describe(self) -> dict[str, Any]:
        keys = ("operation", "kind", "status", "code", "message", "probability", "count", "latency", "seed")
        return {**{key: getattr(self, key) for key in keys}, "shape": self.shape, "fired": self.fired}

    def error(self, operation: str | None) -> EmulatorError:
        """The error this rule answers with, in the wire shape of the operation's family (§5e)."""
        shape = self.shape
        code = self.code
        if shape == "auto":
            if code and code.startswith(("APIGW.", "APIG.")):
                shape = "gateway"
            elif operation in _CINDER_OPERATIONS:
                shape = "cinder"
            elif operation is not None and operation.startswith("iam."):
                shape = "keystone"
            else:
                shape = "cloud"
        if shape == "gateway":
            # An emulator-chosen code: the gateway's own code for "backend unavailable" is not documented.
            return GatewayError(self.status, code or "APIGW.0201", self.message or "Backend unavailable")
        if shape == "cinder":
            return CinderError(self.status, self.message or "Service unavailable, please retry.")
        if shape == "keystone":
            return KeystoneError(self.status, self.message or "The service is temporarily unavailable.")
        # VolumeBackup.0900 is VBS's documented "service unavailable" (503); used for every service family.
        return CloudApiError(code or "VolumeBackup.0900", self.message or "service unavailable", self.status)


class FaultInjector:
    """The active fault rules; `pick` finds the rule that fires for one request (at most one)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, operation: str | None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if not rule.matches(operation):
                    continue
                # Draw only for rules that match, so one rule's sequence does not depend on the others.
                if rule.probability < 1.0 and rule.rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                return rule
        return None


class RateLimiter:
    """A token bucket: `rate` requests per second on average, bursts up to `burst`; off while rate is None."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.rate: float | None = None
        self.burst: float = 0.0
        self._tokens = 0.0
        self._last = 0.0

    def configure(self, rate: float | None, burst: float | None = None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or null to remove the limit)")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        with self._lock:
            self.rate = rate
            self.burst = float(burst if burst is not None else max(1.0, rate or 1.0))
            self._tokens = self.burst  # a new limit starts with a full bucket
            self._last = self._monotonic()

    def describe(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst if self.rate is not None else None}

    def acquire(self) -> float | None:
        """Take one token: None when allowed, else the seconds until a token is available."""
        with self._lock:
            if self.rate is None:
                return None
            now = self._monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return None
            return (1.0 - self._tokens) / self.rate

    def throttled(self, retry_after: float) -> GatewayError:
        """The gateway's 429 (reference §5f), with `Retry-After` in whole seconds (at least 1)."""
        rate = self.rate or 0.0
        limit = int(rate) if float(rate).is_integer() else rate
        return GatewayError(
            429,
            "APIGW.0308",
            "The throttling threshold has been reached: "
            f"policy user over ratelimit,limit:{limit},time:1 second",
            retry_after=retry_after,
        )


class AccountRateLimits:
    """One `RateLimiter` per account that has a limit; every project of an account draws from its bucket."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._buckets: dict[str, RateLimiter] = {}

    def configure(self, account: str, rate: float | None, burst: float | None = None) -> None:
        """Give `account` a fresh bucket, or remove its limit when `rate` is None."""
        if rate is None:
            with self._lock:
                self._buckets.pop(account, None)
            return
        bucket = RateLimiter(self._monotonic)
        bucket.configure(rate, burst)  # validates before anything changes
        with self._lock:
            self._buckets[account] = bucket

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def describe(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {account: bucket.describe() for account, bucket in sorted(self._buckets.items())}

    def acquire(self, account: str | None) -> GatewayError | None:
        """Take a token from `account`'s bucket: None when allowed (or unlimited), else the 429 to answer."""
        if account is None or not self._buckets:  # the common case costs no lock
            return None
        with self._lock:
            bucket = self._buckets.get(account)
        if bucket is None:
            return None
        retry_after = bucket.acquire()
        return None if retry_after is None else bucket.throttled(retry_after)
