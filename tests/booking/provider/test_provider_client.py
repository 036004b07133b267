"""The provider client against real sockets on 127.0.0.1: what each network outcome becomes.

A provider that answers is the sandbox's business (tests/booking/service/test_service_sending.py); here a raw
asyncio server misbehaves on purpose, byte by byte, as no HTTP framework would let it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable

from rollout.booking.provider.client import MAX_RESPONSE_BYTES, ZaptraClient
from rollout.booking.provider.outcome import Kind, Outcome

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(
        (int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")), 0
    )
    return head, await reader.readexactly(length)


def _answer(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers, "", ""]
    return "\r\n".join(lines).encode() + body


def _send(handler: Handler | None, timeout: float = 5.0) -> tuple[Outcome, list[tuple[str, bytes]]]:
    """One template send from a fresh client to a server running ``handler`` (None: nothing listens)."""
    seen: list[tuple[str, bytes]] = []

    async def main() -> Outcome:
        if handler is None:
            with socket.socket() as probe:  # a port nothing listens on
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            server = None
        else:

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    seen.append(await _read_request(reader))
                    await handler(reader, writer)
                finally:
                    writer.close()

            server = await asyncio.start_server(serve, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
        client = ZaptraClient(max_connections=4)
        try:
            return await client.send_template(
                f"http://127.0.0.1:{port}/api/wpbox", "tok", timeout, "919876543210", "booking", "en_US", ["a", "b"]
            )
        finally:
            await client.aclose()
            if server is not None:
                server.close()

    return asyncio.run(main()), seen


def _reply(data: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return handler


def test_a_success_keeps_the_provider_ids_and_sends_the_template_as_wpbox_wants_it():
    body = json.dumps({"status": "success", "message_id": 7, "message_wamid": "wamid.X"}).encode()
    outcome, seen = _send(_reply(_answer(200, body, "Content-Type: application/json")))
    assert (outcome.kind, outcome.message_id, outcome.wamid) == (Kind.SUCCESS, 7, "wamid.X")
    assert outcome.latency_ms > 0
    [(head, sent)] = seen
    assert head.startswith("POST /api/wpbox/sendtemplatemessage HTTP/1.1")
    assert json.loads(sent) == {
        "token": "tok",
        "phone": "919876543210",
        "template_name": "booking",
        "template_language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
    }


def test_nothing_listening_is_a_connect_error_safe_to_retry():
    outcome, _ = _send(None)
    assert (outcome.kind, outcome.reason) == (Kind.TRANSIENT, "connect_error")


def test_a_connection_closed_after_the_request_is_ambiguous_never_resent():
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        return

    outcome, seen = _send(hang_up)
    assert len(seen) == 1  # the request reached the provider: it may have delivered the message
    assert (outcome.kind, outcome.reason) == (Kind.AMBIGUOUS, "connection_lost")


def test_no_answer_within_the_timeout_is_ambiguous():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    outcome, seen = _send(silent, timeout=0.3)
    assert len(seen) == 1
    assert (outcome.kind, outcome.reason) == (Kind.AMBIGUOUS, "timeout")
    assert outcome.latency_ms < 4000  # bounded by the timeout, not by the provider


def test_an_answer_cut_short_is_ambiguous():
    outcome, _ = _send(_reply(_answer(200, b'{"status": "succ')[:-4]))
    assert (outcome.kind, outcome.reason) == (Kind.AMBIGUOUS, "connection_lost")


def test_an_oversized_answer_is_read_no_further_than_the_limit():
    big = b"x" * (MAX_RESPONSE_BYTES + 4096)
    ok, _ = _send(_reply(_answer(200, big)))
    refused, _ = _send(_reply(_answer(500, big)))
    assert (ok.kind, ok.reason, ok.http_status) == (Kind.AMBIGUOUS, "oversized_response", 200)
    assert (refused.kind, refused.reason) == (Kind.PERMANENT, "oversized_response")


def test_a_rate_limit_carries_its_retry_after_and_a_redirect_is_not_followed():
    limited, _ = _send(_reply(_answer(429, b'{"status": "error"}', "Retry-After: 7")))
    assert (limited.kind, limited.reason, limited.retry_after) == (Kind.TRANSIENT, "rate_limited", 7.0)
    moved, seen = _send(_reply(_answer(302, b"", "Location: http://127.0.0.1:1/elsewhere")))
    assert len(seen) == 1 and moved.http_status == 302 and not moved.ok
