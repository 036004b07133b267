from __future__ import annotations

import compileall
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.flagservice import FlagService
from tests.support.harness import Sandbox, Service, base_env
from tests.support.hostile import Hostile
from tests.support.postgres import Postgres
from tests.support.unleash import Unleash

# A shell starts a background job (`cmd &`) with SIGINT ignored, every process below it inherits that, and a
# Python started so never raises KeyboardInterrupt: the tests that press Ctrl-C on a rollout command would
# then wait for an exit that cannot come. Each process of the run (main and xdist workers) takes SIGINT back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


@pytest.fixture
def make_service(tmp_path: Path, sandbox: Sandbox) -> Iterator[Callable[..., Service]]:
    """Start a service against the sandbox; keyword arguments override env variables."""
    started: list[Service] = []

    def _make(folder: Path | None = None, clock: Any = None, **env: Any) -> Service:
        folder = folder or tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        service = Service(folder, base_env(sandbox.api_url, **env), clock=clock)
        started.append(service)
        return service

    yield _make
    for service in started:
        service.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL cluster for the run; each test takes a fresh database with ``database()``."""
    server = Postgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def flag_service() -> Iterator[FlagService]:
    """One team service with a misbehaving flag endpoint for the run; each test resets it."""
    server = FlagService()
    yield server
    server.server.stop()


@pytest.fixture(scope="session")
def unleash(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Unleash]:
    """One real Unleash server for the run, on a fresh database of the session's PostgreSQL; each
    test uses features of its own."""
    server = Unleash(postgres, tmp_path_factory.mktemp("unleash"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's, driven by Playwright) per test module; each test opens its own
    context. Per module, not per session: Playwright's sync API keeps an event loop running in the
    thread, and a later test's ``asyncio.run`` in the same worker would refuse to start. Skips without
    it (fails in CI, where ``scripts/install-test-deps`` installs it)."""
    from tests.support.requirements_servers import chromium_binary, unavailable

    executable = chromium_binary()
    if executable is None:
        unavailable("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def hostile_server() -> Iterator[Hostile]:
    """One server that answers badly on purpose (:mod:`tests.support.hostile`) for the run; each test resets it."""
    server = Hostile()
    yield server
    server.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (the order is otherwise kept): xdist hands tests out in collection order, and a
    long test handed out last keeps one worker busy while the other cores have nothing left to do."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile the package and the test helpers once, before any worker starts (xdist workers skip
    it). Where ``PYTHONDONTWRITEBYTECODE`` is set, as on the shared test machine, nothing else writes a
    ``.pyc`` for them, and every ``python -m rollout`` the tests start (hundreds) compiled the modules it
    imports from source again: a third of a second of CPU each. Up to date, this costs milliseconds; a
    changed file's stale ``.pyc`` is never used (Python checks the source's time stamp)."""
    if hasattr(config, "workerinput"):
        return
    for folder in ("rollout", "tests"):
        compileall.compile_dir(Path(__file__).resolve().parents[1] / folder, quiet=1)
