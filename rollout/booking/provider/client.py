"""The wpbox / Zaptra HTTP client.

One narrow I/O call (:meth:`ZaptraClient._call`) turns every httpx result into an
:class:`~rollout.provider.outcome.Outcome`; httpx's exceptions never leave this module. Policy
(retries, the breaker, fallback) lives in the outbox, which can persist it. The transport is
injectable so a test can hand in ``httpx.MockTransport`` for a provider edge case.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx

from rollout.booking.provider.outcome import Kind, Outcome, classify_response

#: largest answer we read from the provider; wpbox's answers are a few hundred bytes
MAX_RESPONSE_BYTES = 1 << 20
#: connections per httpx client; see ZaptraClient.__init__
POOL_SHARD_SIZE = 4


def template_components(parameters: Sequence[str]) -> list[dict[str, Any]]:
    """Meta's component list for a template whose body takes ``parameters`` in order."""
    return [{"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]}]


class ZaptraClient:
    """Async client for the wpbox endpoints. The base URL, token and timeout are passed per call,
    because the service's settings are live."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None, max_connections: int = 128) -> None:
        # httpcore's pool scans (and polls the socket of) every pooled connection on every request,
        # so one pool of 128 costs more than the request itself. Small pools, the least busy one
        # taken each time, keep each scan short and never queue a request behind a hung shard
        # while another has a free connection. Measured in benchmarks/service_throughput.py.
        shards = max(1, -(-max_connections // POOL_SHARD_SIZE))
        limits = httpx.Limits(
            max_connections=POOL_SHARD_SIZE, max_keepalive_connections=POOL_SHARD_SIZE, keepalive_expiry=2.0
        )
        headers = {"Accept": "application/json", "User-Agent": "rollout-whatsapp/0.1"}
        self._pool = [
            httpx.AsyncClient(transport=transport, limits=limits, follow_redirects=False, headers=headers)
            for _ in range(shards)
        ]
        self._busy = [0] * shards

    async def aclose(self) -> None:
        for client in self._pool:
            await client.aclose()

    async def send_template(
        self,
        base_url: str,
        token: str,
        timeout: float,
        phone: str,
        name: str,
        language: str,
        parameters: Sequence[str],
    ) -> Outcome:
        """POST ``/sendtemplatemessage``; ``phone`` in the provider's digits-only form."""
        body = {
            "token": token,
            "phone": phone,
            "template_name": name,
            "template_language": language,
            "components": template_components(parameters),
        }
        return await self._call("POST", f"{base_url}/sendtemplatemessage", timeout, json=body)

    async def send_message(self, base_url: str, token: str, timeout: float, phone: str, message: str) -> Outcome:
        """POST ``/sendmessage`` (free text; Meta allows it only within 24 h of the customer's last message)."""
        body = {"token": token, "phone": phone, "message": message}
        return await self._call("POST", f"{base_url}/sendmessage", timeout, json=body)

    async def get_templates(self, base_url: str, token: str, timeout: float) -> Outcome:
        """GET ``/getTemplates``; on success ``outcome.data["templates"]`` is the provider's list."""
        return await self._call("GET", f"{base_url}/getTemplates", timeout, params={"token": token})

    async def _call(self, method: str, url: str, timeout: float, **kwargs: Any) -> Outcome:
        started = time.perf_counter()
        outcome = await self._exchange(method, url, timeout, **kwargs)
        latency = (time.perf_counter() - started) * 1000.0
        return Outcome(**{**outcome.__dict__, "latency_ms": latency})

    async def _exchange(self, method: str, url: str, timeout: float, **kwargs: Any) -> Outcome:
        shard = self._busy.index(min(self._busy))
        self._busy[shard] += 1
        try:
            async with self._pool[shard].stream(method, url, timeout=httpx.Timeout(timeout), **kwargs) as response:
                content = b""
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_RESPONSE_BYTES:
                        break
        # Errors raised before the request left this machine are safe to retry ...
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Outcome(Kind.TRANSIENT, "connect_timeout", detail=type(exc).__name__)
        except httpx.ConnectError as exc:
            return Outcome(Kind.TRANSIENT, "connect_error", detail=type(exc).__name__)
        except httpx.WriteTimeout as exc:
            return Outcome(Kind.TRANSIENT, "write_timeout", detail=type(exc).__name__)
        # ... errors after it was sent are not: the provider may have delivered the message.
        except httpx.ReadTimeout as exc:
            return Outcome(Kind.AMBIGUOUS, "timeout", detail=type(exc).__name__)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            return Outcome(Kind.AMBIGUOUS, "connection_lost", detail=type(exc).__name__)
        except httpx.HTTPError as exc:
            return Outcome(Kind.AMBIGUOUS, "http_error", detail=type(exc).__name__)
        finally:
            self._busy[shard] -= 1
        if len(content) > MAX_RESPONSE_BYTES:
            kind = Kind.AMBIGUOUS if response.is_success else Kind.PERMANENT
            return Outcome(kind, "oversized_response", response.status_code, detail="answer larger than 1 MiB")
        return classify_response(response.status_code, content, response.headers.get("retry-after"))
