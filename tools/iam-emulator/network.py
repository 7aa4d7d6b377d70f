"""How IAM behaves at the network edge: latency, an account-wide rate limit, and
eventually consistent reads. server.py applies these to IAM requests; the
configuration is switched at start (``--network`` and friends) and at runtime
(``/_emulator/network``). See README.md for the contract.

Everything here is optional and off by default: with no configuration the
emulator answers as before (no sleep, no throttling, reads see the latest write).
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import random
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

# Two-sided 99th percentile of the standard normal: the log-normal's sigma is
# ln(p99 / median) / Z99.
Z99 = 2.3263478740408408
# Per-second counters older than this are dropped (an hour of a benchmark).
SERIES_SECONDS = 3600
SECTIONS = ("latency", "rateLimit", "consistency")


class ConfigError(ValueError):
    pass


def _number(
    spec: dict[str, Any], key: str, default: float | None = None, minimum: float = 0
) -> float:
    value = spec.get(key, default)
    if value is None:
        raise ConfigError(f'"{key}" is required')
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f'"{key}" is a number')
    if value < minimum:
        raise ConfigError(f'"{key}" is at least {minimum}')
    return float(value)


def _check_fields(spec: Any, what: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ConfigError(f"{what} is a JSON object or null")
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"unknown {what} fields: {sorted(unknown)}")
    return spec


def is_read(action: str) -> bool:
    """IAM's read actions (Get*, List*); every other action counts as a write."""
    return action.startswith(("Get", "List"))


# ------------------------------------------------------------------ latency


class Latency:
    """A round-trip delay per IAM request.

    ``{"ms": 100}`` fixed; ``{"ms": 100, "jitterMs": 20}`` uniform in [80, 120];
    ``{"medianMs": 100, "p99Ms": 400}`` log-normal with that median and 99th
    percentile. Any form takes ``"spike": {"probability": 0.01, "ms": 1000}``
    (that extra delay on that share of requests) and ``"seed"`` (draws repeat
    from run to run; under concurrency the order in which requests get them may
    differ, the sequence of draws does not)."""

    def __init__(self, spec: Any) -> None:
        spec = _check_fields(
            spec, "latency", {"ms", "jitterMs", "medianMs", "p99Ms", "spike", "seed"}
        )
        self.spec = spec
        if "medianMs" in spec or "p99Ms" in spec:
            if "ms" in spec or "jitterMs" in spec:
                raise ConfigError('latency is either "ms" (+ "jitterMs") or "medianMs" + "p99Ms"')
            self.median = _number(spec, "medianMs")
            p99 = _number(spec, "p99Ms")
            if self.median <= 0 or p99 < self.median:
                raise ConfigError('"medianMs" > 0 and "p99Ms" >= "medianMs"')
            self.sigma = math.log(p99 / self.median) / Z99
            self.lognormal = True
        else:
            self.lognormal = False
            self.ms = _number(spec, "ms")
            self.jitter = _number(spec, "jitterMs", 0)
        spike = spec.get("spike")
        self.spike_probability = 0.0
        self.spike_ms = 0.0
        if spike is not None:
            spike = _check_fields(spike, "latency spike", {"probability", "ms"})
            self.spike_probability = _number(spike, "probability")
            if self.spike_probability > 1:
                raise ConfigError('spike "probability" is between 0 and 1')
            self.spike_ms = _number(spike, "ms")
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise ConfigError('"seed" is an integer or a string')
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def sample_ms(self) -> float:
        with self.lock:
            if self.lognormal:
                ms = self.random.lognormvariate(math.log(self.median), self.sigma)
            else:
                jitter = self.random.uniform(-self.jitter, self.jitter) if self.jitter else 0
                ms = self.ms + jitter
            if self.spike_probability and self.random.random() < self.spike_probability:
                ms += self.spike_ms
        return max(ms, 0.0)


# --------------------------------------------------------------- rate limit


class Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``; starts full."""

    def __init__(self, spec: Any, what: str) -> None:
        spec = _check_fields(spec, what, {"rate", "burst"})
        self.rate = _number(spec, "rate")
        self.burst = _number(spec, "burst", max(self.rate, 1), minimum=1)
        self.spec = {"rate": spec["rate"], "burst": spec.get("burst", self.burst)}
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RateLimit:
    """Account-wide limits, one bucket for reads and one for writes; either may be absent."""

    def __init__(self, spec: Any) -> None:
        spec = _check_fields(spec, "rateLimit", {"reads", "writes"})
        self.buckets = {
            kind: Bucket(spec[kind], f"rateLimit {kind}")
            for kind in ("reads", "writes")
            if spec.get(kind) is not None
        }
        self.spec = {kind: b.spec for kind, b in self.buckets.items()}


class Traffic:
    """Accepted and throttled IAM requests: totals and a per-second series."""

    def __init__(self) -> None:
        self.series: OrderedDict[int, dict[str, int]] = OrderedDict()
        self.totals = {"reads": 0, "writes": 0, "throttledReads": 0, "throttledWrites": 0}

    def count(self, key: str, now: float) -> None:
        second = int(now)
        row = self.series.get(second)
        if row is None:
            row = self.series[second] = {
                "reads": 0,
                "writes": 0,
                "throttledReads": 0,
                "throttledWrites": 0,
            }
            while self.series and next(iter(self.series)) < second - SERIES_SECONDS:
                self.series.popitem(last=False)
        row[key] += 1
        self.totals[key] += 1

    def describe(self, since: int | None) -> dict[str, Any]:
        seconds = [s for s in self.series if since is None or s >= since]
        rows = []
        if seconds:
            # Contiguous seconds, quiet ones as zeros, so the series plots as is:
            # from `since` (or the first second counted, if later) to the last.
            first = max(since, next(iter(self.series))) if since is not None else seconds[0]
            for s in range(first, seconds[-1] + 1):
                row = self.series.get(s)
                zero = {"reads": 0, "writes": 0, "throttledReads": 0, "throttledWrites": 0}
                rows.append({"t": s, **(row or zero)})
        return {"totals": dict(self.totals), "series": rows}


# -------------------------------------------------------------- consistency


class Consistency:
    """Reads answered from the IAM state as it was ``lagMs`` ago.

    The live backend takes every write (IAM's write path is consistent). Before a
    write, a copy of the state it is about to change is kept with the interval of
    time during which that state was current; a read at time t is answered from
    the copy that was current at t - lag (or from the live backend when no write
    happened since t - lag). Copies are taken at most once per ``granularityMs``:
    a write that lands within that time of the previous copy shares the next copy,
    so it becomes readable between lagMs and lagMs + granularityMs after it
    happened. When copies are slow (large states), copies are spaced at least
    three copy-times apart instead, which widens that window accordingly (1000
    users: ~75 ms). All of this runs under the server's moto lock."""

    def __init__(self, spec: Any) -> None:
        spec = _check_fields(spec, "consistency", {"lagMs", "granularityMs"})
        self.lag = _number(spec, "lagMs") / 1000.0
        default_granularity = min(max(self.lag * 1000 / 20, 1.0), 100.0)
        self.granularity = _number(spec, "granularityMs", default_granularity) / 1000.0
        self.spec = {"lagMs": spec["lagMs"], "granularityMs": self.granularity * 1000}
        # [end, state]: state was current until `end` (monotonic seconds), from the
        # previous entry's end on (the first one: from before anything was kept).
        self.history: list[list[Any]] = []
        self.live_since = -math.inf
        self.last_copy = -math.inf
        self.copy_cost = 0.0

    def prune(self, now: float) -> None:
        target = now - self.lag
        while self.history and self.history[0][0] <= target:
            self.history.pop(0)

    def state_for_read(self, now: float) -> Any | None:
        """The copy a read at `now` sees, or None for the live backend."""
        self.prune(now)
        target = now - self.lag
        if target >= self.live_since:
            return None
        for end, state in self.history:
            if end > target:
                return state
        return None

    def before_write(self, now: float, snapshot: Callable[[], Any]) -> Any | None:
        self.prune(now)
        # Copies cost time under the lock (~25 ms for 1000 users): however small
        # granularityMs is, they take at most a quarter of the time.
        if self.history and now - self.last_copy < max(self.granularity, 3 * self.copy_cost):
            return None
        started = time.perf_counter()
        copied = snapshot()
        self.copy_cost = time.perf_counter() - started
        return copied

    def after_write(self, now: float, copied: Any | None, succeeded: bool) -> None:
        # A refused write (HTTP >= 400) changed nothing: its copy is not needed.
        if not succeeded:
            return
        if copied is not None:
            self.history.append([now, copied])
            self.last_copy = now
        elif self.history:
            self.history[-1][0] = now
        self.live_since = now


class _Pickler(pickle.Pickler):
    """Pickles a backend, leaving the AWS managed policies out by reference."""

    def __init__(self, out: io.BytesIO, shared: dict[int, Any]) -> None:
        super().__init__(out, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj: Any) -> Any:
        return id(obj) if id(obj) in self.shared else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, shared: dict[int, Any]) -> None:
        super().__init__(data)
        self.shared = shared
        self.copies: dict[int, Any] = {}

    def persistent_load(self, pid: Any) -> Any:
        found = self.copies.get(pid)
        if found is None:
            found = self.copies[pid] = copy.copy(self.shared[pid])
        return found


def snapshot_backends(backends: dict[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Deep copies of moto IAM backends. AWS managed policies (~1600) are shared
    except for their attachment counts, which is all of them that ever changes.
    A pickle round trip is ~3x faster than copy.deepcopy (measured: ~5 ms for an
    empty account, ~25 ms with 1000 users each with a key and a tag); deepcopy is
    the fallback for anything that does not pickle."""
    shared: dict[int, Any] = {}
    for backend in backends.values():
        for policy in getattr(backend, "aws_managed_policies", []):
            shared[id(policy)] = policy
    try:
        out = io.BytesIO()
        _Pickler(out, shared).dump(backends)
        out.seek(0)
        copied: dict[tuple[str, str], Any] = _Unpickler(out, shared).load()
        return copied
    except (pickle.PicklingError, TypeError, AttributeError):
        memo = {key: copy.copy(policy) for key, policy in shared.items()}
        return {key: copy.deepcopy(backend, memo) for key, backend in backends.items()}


# ------------------------------------------------------------------ network


class Network:
    """The current configuration of the three behaviours, plus traffic counters.
    `startup` is what /_emulator/reset returns to."""

    def __init__(self, startup: dict[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.latency: Latency | None = None
        self.rate_limit: RateLimit | None = None
        self.consistency: Consistency | None = None
        self.traffic = Traffic()
        self.startup = parse(startup or {})
        self.apply(self.startup)

    def apply(self, parsed: dict[str, Any]) -> None:
        with self.lock:
            if "latency" in parsed:
                self.latency = parsed["latency"]
            if "rateLimit" in parsed:
                self.rate_limit = parsed["rateLimit"]
            if "consistency" in parsed:
                self.consistency = parsed["consistency"]

    def update(self, spec: Any) -> dict[str, Any]:
        self.apply(parse(spec))
        return self.describe()

    def reset(self) -> None:
        """Back to the start-up configuration (fresh buckets, seeds and history)."""
        spec: dict[str, Any] = {section: None for section in SECTIONS}
        spec.update({k: _spec_of(v) for k, v in self.startup.items()})
        self.apply(parse(spec))
        with self.lock:
            self.traffic = Traffic()

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "latency": _spec_of(self.latency),
                "rateLimit": _spec_of(self.rate_limit),
                "consistency": _spec_of(self.consistency),
            }

    def delay_ms(self) -> float:
        latency = self.latency
        return latency.sample_ms() if latency else 0.0

    def admit(self, action: str) -> bool:
        """Takes a token for the request (if a limit is set) and counts it."""
        kind = "reads" if is_read(action) else "writes"
        now_mono, now = time.monotonic(), time.time()
        with self.lock:
            bucket = self.rate_limit.buckets.get(kind) if self.rate_limit else None
            admitted = bucket.take(now_mono) if bucket else True
            key = kind if admitted else "throttled" + kind.capitalize()
            self.traffic.count(key, now)
        return admitted

    def rate(self, since: int | None) -> dict[str, Any]:
        with self.lock:
            out = self.traffic.describe(since)
            out["rateLimit"] = _spec_of(self.rate_limit)
        return out

    def clear_traffic(self) -> None:
        with self.lock:
            self.traffic = Traffic()


def _spec_of(obj: Any) -> Any:
    return None if obj is None else obj.spec


def parse(spec: Any) -> dict[str, Any]:
    """{"latency": ..., "rateLimit": ..., "consistency": ...}: each section present
    is set (null switches it off); sections left out are not changed."""
    spec = _check_fields(spec, "network", set(SECTIONS))
    out: dict[str, Any] = {}
    kinds = {"latency": Latency, "rateLimit": RateLimit, "consistency": Consistency}
    for section, kind in kinds.items():
        if section in spec:
            value = spec[section]
            out[section] = None if value is None else kind(value)
    return out
