"""A server that answers badly on purpose, byte by byte, as no HTTP framework would let it: an
Unleash, a flag endpoint, a service or a Prometheus that trickles, floods, redirects, hangs or
answers the wrong shape. Raw sockets on 127.0.0.1, one thread per connection; each request is
recorded (method, path, body) and answered as the test set that path up."""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class Answer:
    """How one request is answered. ``trickle`` (seconds): the answer goes out one byte at a time,
    that far apart (headers included with ``trickle_headers``); ``hang``: nothing is said until the
    client gives up."""

    status: int = 200
    body: bytes = b""
    headers: tuple[str, ...] = ()
    trickle: float | None = None
    trickle_headers: bool = False
    hang: bool = False

    def head(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} X", f"Content-Length: {len(self.body)}", "Connection: close", *self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode(), ("Content-Type: application/json",))


def trickled(data: Any, every: float = 0.5, headers: bool = False) -> Answer:
    """A JSON answer trickled one byte every ``every`` seconds (its headers too with ``headers``)."""
    return Answer(200, json.dumps(data).encode() + b" " * 200, ("Content-Type: application/json",), every, headers)


@cache
def gzip_bomb(gib: int = 2) -> bytes:
    """A gzip answer of about ``gib`` MiB that expands to ``gib`` GiB of zeros (1 MiB blocks, each
    flushed whole, so one compressed block repeats: built in a fraction of a second)."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    blocks = gib << 10
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * blocks + deflate.flush() + struct.pack("<II", crc, (blocks << 20) & 0xFFFFFFFF)


def bomb_answer(gib: int = 2) -> Answer:
    return Answer(200, gzip_bomb(gib), ("Content-Type: application/json", "Content-Encoding: gzip"))


@dataclass
class Hostile:
    """The server. ``routes`` maps ``"METHOD /path"`` (the path without its query; the longest
    matching prefix wins) to an :class:`Answer` or a function of the request (its path with the
    query, decoded, and its body) returning one."""

    routes: dict[str, Answer | Callable[[str, bytes], Answer]] = field(default_factory=dict)
    default: Answer = field(default_factory=lambda: json_answer({"message": "not found"}, 404))
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hostile = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                hostile._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def on(self, route: str, answer: Answer | Callable[[str, bytes], Answer]) -> Hostile:
        self.routes[route] = answer
        return self

    def reset(self) -> Hostile:
        self.routes.clear()
        self.seen.clear()
        return self

    def requests(self, method: str | None = None) -> list[str]:
        """``"METHOD /path"`` of each request so far, in order."""
        return [f"{m} {p}" for m, p, _ in self.seen if method is None or m == method]

    def _answer(self, method: str, path: str, body: bytes) -> Answer:
        key = f"{method} {path.split('?', 1)[0]}"
        matches = [r for r in self.routes if key.startswith(r)]
        if not matches:
            return self.default
        chosen = self.routes[max(matches, key=len)]
        return chosen(unquote_plus(path), body) if callable(chosen) else chosen

    def _serve(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            line = reader.readline(65536).decode("latin-1").split()
            if len(line) < 2:
                return
            length = 0
            while (header := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = reader.read(length) if length else b""
            method, path = line[0], line[1]
            self.seen.append((method, path, body))
            answer = self._answer(method, path, body)
            if answer.hang:
                self._stop.wait(30)
                return
            head = answer.head()
            if answer.trickle is None:
                sock.sendall(head + answer.body)
                return
            if not answer.trickle_headers:
                sock.sendall(head)
                head = b""
            for i in range(len(head) + len(answer.body)):
                byte = head[i : i + 1] if i < len(head) else answer.body[i - len(head) : i - len(head) + 1]
                sock.sendall(byte)
                if self._stop.wait(answer.trickle):
                    return
        except OSError:
            return  # the client gave up: what a deadline is for
        finally:
            reader.close()

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
