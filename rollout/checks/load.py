"""A load generator: N requests at a concurrency, or a rate for a duration.

Bounded twice: by the number of requests and by a hard time limit. Uses several small httpx pools
(one pool's lock is the bottleneck past a few dozen connections) and reports each request's
latency. What a request is comes from the caller: a playbook's ``request`` template
(:func:`templated_requests`) or a target's own (the embedded service's bookings).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rollout.checks import CheckResult
from rollout.util.numbers import percentile

POOL_SHARD = 8


@dataclass
class LoadResult:
    requested: int
    created: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    stopped_early: bool = False

    @property
    def success_rate(self) -> float | None:
        return self.created / self.requested if self.requested else None

    def p(self, q: float) -> float | None:
        value = percentile(self.latencies, q)
        return None if value is None else value * 1000.0

    @property
    def achieved_rate(self) -> float:
        return self.created / self.elapsed_s if self.elapsed_s else 0.0


#: one request of a load: (method, path or URL, JSON body, headers)
Request = tuple[str, str, Any, dict[str, str] | None]


def templated_requests(method: str, url: str, body: Any, headers: dict[str, str]) -> Callable[[int], Request]:
    """Request ``i`` of a generic load: ``$i`` in the URL and in the body's strings becomes ``i``."""

    def fill(value: Any, i: int) -> Any:
        if isinstance(value, dict):
            return {k: fill(v, i) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, i) for v in value]
        return value.replace("$i", str(i)) if isinstance(value, str) else value

    return lambda i: (method, url.replace("$i", str(i)), fill(body, i), headers or None)


async def _run(
    url: str,
    total: int,
    concurrency: int,
    rate: float | None,
    limit_s: float,
    progress: Callable[[int], None] | None,
    request: Callable[[int], Request],
    ok_status: tuple[int, ...],
) -> LoadResult:
    result = LoadResult(total)
    shards = max(1, -(-concurrency // POOL_SHARD))
    limits = httpx.Limits(max_connections=POOL_SHARD, max_keepalive_connections=POOL_SHARD)
    clients = [httpx.AsyncClient(base_url=url, limits=limits, timeout=30) for _ in range(shards)]
    gate = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    deadline = t0 + limit_s

    async def one(i: int) -> None:
        if rate is not None:
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with gate:
            if time.perf_counter() > deadline:
                result.stopped_early = True
                return
            method, target, body, headers = request(i)
            started = time.perf_counter()
            try:
                response = await clients[i % shards].request(method, target, json=body, headers=headers)
            except httpx.HTTPError as exc:
                key: str | None = type(exc).__name__
            else:
                key = None if response.status_code in ok_status else f"HTTP {response.status_code}"
            result.latencies.append(time.perf_counter() - started)
            if key is None:
                result.created += 1
            else:
                result.errors[key] = result.errors.get(key, 0) + 1
            if progress is not None:
                progress(1)

    try:
        await asyncio.gather(*(one(i) for i in range(total)))
    finally:
        for client in clients:
            await client.aclose()
    result.elapsed_s = time.perf_counter() - t0
    return result


def run_load(
    url: str,
    request: Callable[[int], Request],
    ok_status: tuple[int, ...],
    requests: int | None = None,
    concurrency: int = 10,
    rate: float | None = None,
    duration: float | None = None,
    progress: Callable[[int], None] | None = None,
    time_limit: float | None = None,
) -> LoadResult:
    """Run a bounded load of ``request(i)`` against ``url`` (see :func:`templated_requests`),
    counting ``ok_status`` answers as successes.

    Either ``requests`` at ``concurrency``, or ``rate`` per second for ``duration``
    seconds. ``time_limit`` (default: twice the planned time plus 30 s) stops it regardless.
    """
    if requests is None:
        if rate is None or duration is None:
            raise ValueError("give requests, or rate and duration")
        requests = int(rate * duration)
        concurrency = max(concurrency, min(512, int(rate)))
    planned = (requests / rate) if rate else requests / max(concurrency, 1) * 0.05
    limit = time_limit if time_limit is not None else planned * 2 + 30
    return asyncio.run(_run(url, requests, concurrency, rate, limit, progress, request, ok_status))


def success_check(name: str, result: LoadResult, need: float, counted: str) -> CheckResult:
    """``name``: did at least ``need`` (a share) of the load's requests succeed? ``counted`` says what a
    success is (``requests answered 200``)."""
    rate = result.success_rate or 0
    return CheckResult(
        name,
        rate >= need,
        f"{result.created}/{result.requested} {counted} ({rate * 100:.2f}%, need >= {need * 100:.2f}%)"
        + (f"; errors {result.errors}" if result.errors else ""),
        result.elapsed_s,
        {"achieved_rate": result.achieved_rate},
    )


def latency_checks(result: LoadResult, expect: Any) -> list[CheckResult]:
    """A check per latency limit of ``expect`` (its ``p95_ms`` and ``p99_ms``) that is set."""
    checks = []
    for q, limit in ((95, expect.p95_ms), (99, expect.p99_ms)):
        if limit is not None:
            value = result.p(q)
            checks.append(
                CheckResult(
                    f"p{q} latency",
                    value is not None and value <= limit,
                    f"p{q} {value or 0:.1f} ms (limit {limit:g} ms, {len(result.latencies)} requests)",
                )
            )
    return checks
