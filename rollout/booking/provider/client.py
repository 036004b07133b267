"""The wpbox / Zaptra HTTP client.

One narrow I/O call (:meth:`ZaptraClient._exchange`) turns every HTTP result into an
:class:`~rollout.booking.provider.outcome.Outcome`; the HTTP library's exceptions never leave this
module. Policy (retries, the breaker, fallback) lives in the outbox, which can persist it.

The library is aiohttp: the sender is the service's hot loop, and measured against the sandbox
(``benchmarks/service_throughput.py``, docs/figures.md) a send through httpx cost the service about
0.9 ms of CPU against about 0.15 ms through aiohttp, most of it in httpx's and anyio's layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from rollout.booking.provider.outcome import Kind, Outcome, classify_response
from rollout.util import bounded

#: largest answer we read from the provider (on the wire and decoded); wpbox's answers are a few hundred bytes
MAX_RESPONSE_BYTES = bounded.MAX_ANSWER_BYTES
#: how long an idle connection to the provider is kept for the next send
KEEPALIVE_S = 2.0
#: the share of the timeout a send may spend getting its connection (a pooled one, or a TCP connect):
#: a send that times out before it has one never left this machine and is safe to retry; the whole
#: send, answer included, ends within the timeout
CONNECT_SHARE = 0.9


def template_components(parameters: Sequence[str]) -> list[dict[str, Any]]:
    """Meta's component list for a template whose body takes ``parameters`` in order."""
    return [{"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]}]


class ZaptraClient:
    """Async client for the wpbox endpoints. The base URL, token and timeout are passed per call,
    because the service's settings are live. Made inside the running event loop."""

    def __init__(self, max_connections: int = 128) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, keepalive_timeout=KEEPALIVE_S),
            headers={
                "Accept": "application/json",
                "Accept-Encoding": bounded.ACCEPT_ENCODING,
                "User-Agent": "rollout-whatsapp/0.1",
            },
            # the service's own environment decides nothing about where the provider is
            trust_env=False,
            # the answer is decoded by bounded.BodyLimit: capped before and after decompression
            auto_decompress=False,
        )

    async def aclose(self) -> None:
        await self._session.close()

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
        # ``total`` bounds the whole send, a provider trickling its answer included; ``connect``
        # bounds the wait for a pooled connection as well as the TCP connect, both before the request
        # leaves this machine, and ends first (see CONNECT_SHARE)
        limits = aiohttp.ClientTimeout(total=timeout, connect=timeout * CONNECT_SHARE)
        try:
            async with self._session.request(method, url, timeout=limits, allow_redirects=False, **kwargs) as response:
                body = bounded.BodyLimit(response.headers.get("content-encoding"), MAX_RESPONSE_BYTES)
                async for chunk in response.content.iter_any():
                    body.feed(chunk)
                content = body.body()
        except bounded.TooLarge:
            kind = Kind.AMBIGUOUS if 200 <= response.status < 300 else Kind.PERMANENT
            return Outcome(kind, "oversized_response", response.status, detail="answer larger than 1 MiB")
        except bounded.AnswerRefused as exc:
            kind = Kind.AMBIGUOUS if 200 <= response.status < 300 else Kind.PERMANENT
            return Outcome(kind, "malformed_response", response.status, detail=str(exc))
        # Errors raised before the request left this machine are safe to retry ...
        except aiohttp.ConnectionTimeoutError as exc:
            return Outcome(Kind.TRANSIENT, "connect_timeout", detail=type(exc).__name__)
        except aiohttp.ClientConnectorError as exc:
            return Outcome(Kind.TRANSIENT, "connect_error", detail=type(exc).__name__)
        # ... errors after it was sent are not: the provider may have delivered the message.
        except (aiohttp.SocketTimeoutError, TimeoutError) as exc:
            return Outcome(Kind.AMBIGUOUS, "timeout", detail=type(exc).__name__)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            return Outcome(Kind.AMBIGUOUS, "connection_lost", detail=type(exc).__name__)
        except aiohttp.ClientError as exc:
            return Outcome(Kind.AMBIGUOUS, "http_error", detail=type(exc).__name__)
        return classify_response(response.status, content, response.headers.get("retry-after"))
