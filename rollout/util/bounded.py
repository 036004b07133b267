"""Bounded HTTP answers: how long an operation may take and how much of an answer is read, in one place.

Every client that talks to a server it does not control (a flag service, a target's endpoints,
Prometheus, an Unleash server, the provider) is held to two limits:

- a **total deadline** per operation (:class:`Deadline`), shared by every request the operation
  makes and enforced *inside* a request: a server that trickles its headers or its body a byte at
  a time is cut off when the deadline passes, not when one read waits too long;
- a **cap on each answer** (:class:`BodyLimit`), counted on the wire (before decompression) and
  after it: a small gzip answer that expands to gigabytes is refused once the cap is passed, with
  at most the cap (plus one read) in memory.

:func:`exchange` is the httpx side (the engine's clients and the service's Unleash poll);
:func:`client` makes the httpx client it needs; :func:`json_of` reads an answer read so as the JSON
object (or list) it must be. The service's provider client (aiohttp) feeds the
same :class:`BodyLimit` and bounds its whole send with aiohttp's total timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from rollout.util.errors import MeasurementError

#: the largest answer read by default (on the wire and decoded): flag and metrics answers are a few KiB
MAX_ANSWER_BYTES = 1 << 20
#: the encodings asked for (and so the only ones decoded); anything else is refused
ACCEPT_ENCODING = "gzip, deflate"
#: headers that describe the encoded answer, dropped from the decoded one
_ENCODED_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class AnswerRefused(Exception):
    """An answer that broke a bound; ``str()`` is one line for people."""


class TooSlow(AnswerRefused):
    """The operation's deadline passed before the answer was complete."""


class TooLarge(AnswerRefused):
    """The answer was larger than the cap, on the wire or decoded."""


class BadEncoding(AnswerRefused):
    """The answer came in an encoding that was not asked for, or its encoding is broken."""


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n:,} bytes"


class Deadline:
    """A total time budget for one operation, in seconds from now (wall time: it is a network bound)."""

    def __init__(self, seconds: float, now: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self._now = seconds, now
        self.at = now() + seconds

    def left(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.at - self._now())

    @property
    def passed(self) -> bool:
        return self._now() >= self.at

    def refuse(self, doing: str) -> TooSlow:
        """The error for an answer not complete in time."""
        return TooSlow(f"no complete answer to {doing} within {self.seconds:g}s")


class BodyLimit:
    """Decode an answer as it arrives (identity, gzip or deflate), refusing more than ``max_bytes``
    on the wire or decoded. Feed it the raw chunks; :meth:`body` is the decoded answer."""

    def __init__(self, encoding: str | None, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        coding = (encoding or "identity").strip().lower()
        self.max_bytes, self.wire = max_bytes, 0
        self._deflate = coding == "deflate"
        if coding in ("", "identity"):
            self._inflate: Any = None
        elif coding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif self._deflate:
            self._inflate = zlib.decompressobj()
        else:
            raise BadEncoding(f"the answer is encoded {coding!r}, which was not asked for (only {ACCEPT_ENCODING})")
        self._parts: list[bytes] = []
        self._size = 0

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_bytes:
            raise TooLarge(f"the answer is larger than {_size(self.max_bytes)} decoded")
        self._parts.append(data)

    def _decoded(self, chunk: bytes) -> bytes:
        room = self.max_bytes - self._size
        try:
            return self._inflate.decompress(chunk, room + 1)
        except zlib.error:
            if self._deflate and self.wire == len(chunk):  # "deflate" sent raw, without zlib's header
                self._inflate, self._deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
                return self._decoded(chunk)
            raise BadEncoding("the answer's compression is broken") from None

    def feed(self, chunk: bytes) -> None:
        """One chunk as it came off the wire."""
        self.wire += len(chunk)
        if self.wire > self.max_bytes:
            raise TooLarge(f"the answer is larger than {_size(self.max_bytes)} on the wire")
        self._keep(chunk if self._inflate is None else self._decoded(chunk))

    def body(self) -> bytes:
        """The whole decoded answer."""
        if self._inflate is not None:
            try:
                self._keep(self._inflate.flush(self.max_bytes - self._size + 1))
            except zlib.error:
                raise BadEncoding("the answer's compression is broken") from None
        return b"".join(self._parts)


def client(
    base_url: str = "",
    headers: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx client for :func:`exchange`: redirects never followed, only the encodings
    :class:`BodyLimit` decodes asked for, and no idle connection kept, so every request's socket is
    its own and the deadline can cut it."""
    return httpx.Client(
        base_url=base_url,
        headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
        transport=transport,
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        trust_env=False,
    )


def exchange(
    http: httpx.Client,
    method: str,
    url: str,
    deadline: Deadline,
    max_bytes: int = MAX_ANSWER_BYTES,
    **kwargs: Any,
) -> httpx.Response:
    """One request on ``http`` (made by :func:`client`), its whole answer read before ``deadline``
    and within ``max_bytes``; the answer comes back decoded and read. Raises :class:`TooSlow`,
    :class:`TooLarge`, :class:`BadEncoding` or httpx's own errors (the server cannot be reached)."""
    left = deadline.left()
    if left <= 0:
        raise deadline.refuse(f"{method} {url}")
    sockets: list[socket.socket] = []
    cut = threading.Event()

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
            found = info["return_value"].get_extra_info("socket")
            if found is not None:
                sockets.append(found)

    def on_deadline() -> None:
        cut.set()
        for sock in sockets:  # wakes a read blocked on a server that trickles
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(left, on_deadline)
    timer.daemon = True
    request = http.build_request(method, url, timeout=httpx.Timeout(left), extensions={"trace": trace}, **kwargs)
    timer.start()
    try:
        try:
            response = http.send(request, stream=True)
        except httpx.HTTPError as exc:
            if cut.is_set() or deadline.passed:
                raise deadline.refuse(f"{method} {url}") from exc
            raise
        try:
            limit = BodyLimit(response.headers.get("content-encoding"), max_bytes)
            for chunk in response.iter_raw():
                limit.feed(chunk)
                if deadline.passed:
                    raise deadline.refuse(f"{method} {url}")
            body = limit.body()
        except httpx.HTTPError as exc:
            if cut.is_set() or deadline.passed:
                raise deadline.refuse(f"{method} {url}") from exc
            raise
        finally:
            response.close()
    finally:
        timer.cancel()
    kept = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _ENCODED_HEADERS]
    return httpx.Response(response.status_code, headers=kept, content=body, request=request)


def json_of(response: httpx.Response, who: str, expect: type = dict, shape: str = "a JSON object") -> Any:
    """``response``'s body as JSON of the ``expect`` type (a ``dict``: a JSON object; a ``list``,
    named ``shape``), else one :class:`~rollout.util.errors.MeasurementError` naming ``who``
    answered: ``WHO: answer is not JSON (HTTP N)`` or ``WHO: answer is not SHAPE``."""
    try:
        body = response.json()
    except ValueError as exc:
        raise MeasurementError(f"{who}: answer is not JSON (HTTP {response.status_code})") from exc
    if not isinstance(body, expect):
        raise MeasurementError(f"{who}: answer is not {shape}")
    return body
