"""A request refused before it reaches an endpoint (too large, overloaded): one JSON answer, written
straight to the ASGI ``send``, in the shape every error of the API has (``error``, ``detail``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


async def refuse(send: Any, status: int, error: str, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer ``status`` with ``{"error": error, "detail": detail}`` and any extra ``headers``."""
    body = json.dumps({"error": error, "detail": detail}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
