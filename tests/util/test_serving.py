"""An app served from a thread (:class:`rollout.util.serving.ServerThread`): started, its routes are
built before anyone else asks it anything, so FastAPI's silenced pydantic warning cannot escape
through another thread's ``warnings.catch_warnings``."""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Query
from pydantic.warnings import UnsupportedFieldAttributeWarning

from rollout.util.serving import WARM_UP_PATH, ServerThread

router = APIRouter()


@router.get("/samples")
async def samples(
    metric: Annotated[str, Query()],
    window: Annotated[float, Query(gt=0)] = 300,
    limit: Annotated[int, Query(ge=1)] = 10,
) -> dict[str, Any]:
    return {"metric": metric, "window": window, "limit": limit}


def app_with_a_router(seen: list[str] | None = None) -> FastAPI:
    """A FastAPI app whose routes sit in an included router (built at the first request that walks it),
    as the service's do; ``seen`` gets the path of every request it is asked."""
    app = FastAPI()
    app.include_router(router)
    if seen is not None:

        @app.middleware("http")
        async def record(request: Any, call_next: Any) -> Any:
            seen.append(request.url.path)
            return await call_next(request)

    return app


def test_start_returns_once_one_request_has_walked_every_route():
    seen: list[str] = []
    with ServerThread(app_with_a_router(seen)) as server:
        assert seen == [WARM_UP_PATH]  # answered (a 404) before start returned
        answer = httpx.get(f"{server.url}/samples", params={"metric": "m", "window": 60})
        assert answer.json() == {"metric": "m", "window": 60.0, "limit": 10}
        # the parameters are still checked as declared
        assert httpx.get(f"{server.url}/samples", params={"metric": "m", "window": 0}).status_code == 422


@pytest.mark.slow  # twelve servers, each started and stopped
def test_a_first_request_from_another_thread_lets_no_pydantic_warning_escape():
    """What pytest does around every test (a ``catch_warnings`` of its own, entered and left) while a
    server's first request comes from another thread: before the routes were built at start, FastAPI's
    filter was lost now and then and the warning named a parameter (``metric``, ``window``)."""
    escaped: list[str] = []
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # threads take turns often: the race shows within a dozen servers
    try:
        for _ in range(12):
            with ServerThread(app_with_a_router()) as server:
                first = threading.Thread(target=httpx.get, args=(f"{server.url}/samples?metric=m",))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    first.start()
                    while first.is_alive():
                        with warnings.catch_warnings():
                            warnings.simplefilter("always")
                    first.join()
                escaped += [str(w.message) for w in caught if w.category is UnsupportedFieldAttributeWarning]
    finally:
        sys.setswitchinterval(before)
    assert escaped == []
