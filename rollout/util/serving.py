"""Running ASGI apps with uvicorn: in the foreground (CLI) or in a thread (tests, demo, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from rollout.util.errors import ConfigError


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening socket now, so a taken port is a clear error and never a race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are TCP,
    # and an accepted connection inherits it; with Nagle on, a response written in two parts waits 40 ms
    # for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror})") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _config(app: Any, access_log: bool, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        access_log=access_log,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=15,
        # longer than the idle timeout of common client pools (httpx 5 s, load balancers 60 s): the
        # server closing a kept-alive connection just as a client reuses it is a reset the client sees
        timeout_keep_alive=65,
        # uvloop (uvicorn's "auto" choice) serves an overloaded server unfairly: at 256 connections a
        # few waited 3-5 s while the median waited 0.1 s; the standard loop serves them in turn
        loop="asyncio",
        server_header=False,
        date_header=False,
    )


class _Server(uvicorn.Server):
    """A uvicorn server that first ends an app's long-lived responses (``app.state.end_streams()``, the
    dashboard's event streams) when it stops: a graceful shutdown waits for every response to finish."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        end = getattr(getattr(self.config.app, "state", None), "end_streams", None)
        if end is not None:
            end()
        await super().shutdown(sockets)


def serve_forever(app: Any, host: str, port: int, access_log: bool = False, log_level: str = "info") -> None:
    """Serve ``app`` until SIGINT/SIGTERM; graceful shutdown runs the app's lifespan exit."""
    sock = bind(host, port)
    server = _Server(_config(app, access_log, log_level))
    server.run(sockets=[sock])


#: the path of the request :meth:`ServerThread.start` sends before it returns: one no route answers
WARM_UP_PATH = "/.rollout-warm-up"


class ServerThread:
    """An ASGI app served on 127.0.0.1:``port`` from a background thread.

    ``with ServerThread(app) as srv: ...`` starts it, waits until it listens and its routes are
    built, and stops it (graceful shutdown, lifespan exit) on leaving the block.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self._sock = bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.server = _Server(_config(app, False, log_level))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("server thread died during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.01)
        self._build_routes()
        return self

    def _build_routes(self) -> None:
        """Ask for :data:`WARM_UP_PATH` (a 404) and wait for the answer: a FastAPI app builds the routes
        of each router it includes at the first request that walks them, and this one walks them all.

        Why now: FastAPI builds a route's parameters inside ``warnings.catch_warnings()`` (to silence
        pydantic's ``UnsupportedFieldAttributeWarning`` for the ``alias`` it gives each parameter), and
        before Python 3.14 that swaps the process's one list of warning filters: another thread leaving
        a ``catch_warnings`` of its own meanwhile (pytest's, around every test) puts back a list
        without FastAPI's filter, and the warning escapes, naming a parameter (``metric``, ``window``).
        Built here, while the thread that starts the server waits, the first real request builds
        nothing."""
        try:
            with socket.create_connection((self.host, self.port), timeout=10) as sock:
                sock.sendall(f"GET {WARM_UP_PATH} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n".encode())
                while sock.recv(65536):
                    pass
        except OSError:
            pass  # the routes are built at the first request instead, as they would be without this

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
