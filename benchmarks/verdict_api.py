"""How long the agent's verdict API takes to answer Argo Rollouts or Flagger.

The verdict tests' agent (``tests/support/verdict_harness.py``: its controller running, its app on
127.0.0.1) judging the ``guard`` gate set (one metric read from the team service's ``/stats`` over
HTTP, with a provider token by reference); ``--calls`` sequential GETs of the Argo path, then as
many Flagger POSTs. Printed: the answer time as the caller sees it (p50, p90, p99, max) and the part
of it spent measuring and judging (the answer's ``duration_s``). Each call builds the environment's
providers and clients anew (a read-only run context); the callers' default timeouts are 10 s.

Usage: python benchmarks/verdict_api.py [--calls 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.flagservice import FlagService
from tests.support.peer_contracts import FLAGGER_HEADERS, flagger_payload
from tests.support.verdict_harness import AGENT_TOKEN, VerdictAgent

PATH = "/v1/{caller}/checkout/production/guard"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = statistics.quantiles(ordered, n=100, method="inclusive")
    return f"p50 {p[49] * 1000:.1f} ms, p90 {p[89] * 1000:.1f} ms, p99 {p[98] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def timed(call: Callable[[], httpx.Response], calls: int) -> tuple[list[float], list[float]]:
    call()  # warm
    answered, measured = [], []
    for _ in range(calls):
        started = time.perf_counter()
        response = call()
        answered.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.json()["verdict"] == "pass", response.text
        measured.append(response.json()["duration_s"])
    return answered, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    svc = FlagService()
    svc.reset(rate=0.0, n=500)
    with tempfile.TemporaryDirectory() as tmp:
        agent = VerdictAgent(Path(tmp) / "verdicts", svc, {"ROLLOUT_AGENT_TOKEN": AGENT_TOKEN})
        try:
            bearer = {"Authorization": f"Bearer {AGENT_TOKEN}"}
            payload = flagger_payload("app", "test", "Progressing", {"token": AGENT_TOKEN})
            for name, call in (
                ("argo GET", lambda: agent.http.get(PATH.format(caller="verdict"), headers=bearer)),
                (
                    "flagger POST",
                    lambda: agent.http.post(PATH.format(caller="flagger"), content=payload, headers=FLAGGER_HEADERS),
                ),
            ):
                answered, measured = timed(call, args.calls)
                print(f"{name}: {args.calls} calls; answered in {percentiles(answered)}")
                print(f"{'':{len(name)}}  of which measuring and judging: {percentiles(measured)}")
        finally:
            agent.close()
            svc.server.stop()


if __name__ == "__main__":
    main()
