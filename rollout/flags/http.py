"""The ``http`` flag backend: a team's own admin endpoint, written with a rendered body and a bearer
token. What rollout last wrote is kept beside the state database; what the target *applied* is
read back by the target (:mod:`rollout.targets`).

The write is the only request (nothing is read before it), within ``flag.timeout`` in total, its
answer read within :data:`~rollout.util.bounded.MAX_ANSWER_BYTES`; a redirect is never followed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field, model_validator

from rollout.flags.base import FlagWriteError, RecordedBackend
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec, Reference
from rollout.playbook.plugins import FlagPlugin
from rollout.util import bounded
from rollout.util.yamlfile import FieldProblems


class HttpFlag(FlagSpec):
    """``backend: http``: a request to ``url`` (a path joins the environment's service_url) with
    ``body`` as a template (``$enabled`` and ``$percent`` become JSON values) and ``token`` as a
    bearer reference."""

    backend: Literal["http"] = "http"
    url: str | None = Field(None, min_length=1)
    method: Literal["PUT", "POST", "PATCH"] = "PUT"
    token: Reference | None = None
    body: Any = Field(default_factory=lambda: {"enabled": "$enabled", "percent": "$percent"})

    @model_validator(mode="after")
    def _complete(self) -> HttpFlag:
        if not self.url:
            raise FieldProblems([(("url",), "required for the http backend")])
        return self


def render_body(template: Any, enabled: bool, percent: int) -> Any:
    """``template`` with ``"$enabled"`` and ``"$percent"`` as JSON values (inside longer strings, as text)."""
    if isinstance(template, dict):
        return {k: render_body(v, enabled, percent) for k, v in template.items()}
    if isinstance(template, list):
        return [render_body(v, enabled, percent) for v in template]
    if template == "$enabled":
        return enabled
    if template == "$percent":
        return percent
    if isinstance(template, str):
        return template.replace("$enabled", "true" if enabled else "false").replace("$percent", str(percent))
    return template


class HttpFlags(RecordedBackend):
    """PUT/POST the rendered body to ``spec.url`` (a path joins the environment's service_url)."""

    spec: HttpFlag

    def __init__(self, spec: HttpFlag, env: str, state_dir: Path, base_url: str, token: str | None) -> None:
        super().__init__(spec, env, state_dir)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = bounded.client(base_url.rstrip("/"))

    def describe(self) -> str:
        return f"{self.spec.method} {self.spec.url}"

    def _write(self, enabled: bool, percent: int) -> None:
        body = render_body(self.spec.body, enabled, percent)
        deadline = bounded.Deadline(self.spec.timeout)
        try:
            response = bounded.exchange(
                self._http, self.spec.method, self.spec.url or "/", deadline, json=body, headers=self.headers
            )
        except bounded.TooSlow:
            raise FlagWriteError(
                f"flag write {self.describe()} got no complete answer within flag.timeout "
                f"({self.spec.timeout:g}s); the flag may not have changed"
            ) from None
        except bounded.AnswerRefused as exc:
            raise FlagWriteError(
                f"flag write {self.describe()} answered with something rollout will not read ({exc}); "
                "the flag may not have changed"
            ) from None
        except httpx.HTTPError as exc:
            raise FlagWriteError(
                f"flag write {self.describe()} failed ({type(exc).__name__}); the flag may not have changed"
            ) from exc
        if 300 <= response.status_code < 400:
            raise FlagWriteError(
                f"flag write {self.describe()} answered HTTP {response.status_code}, a redirect to "
                f"{response.headers.get('location', 'nowhere')[:200]}; rollout never follows redirects: set "
                "flag.url to the endpoint itself; the flag may not have changed"
            )
        if not 200 <= response.status_code < 300:
            raise FlagWriteError(
                f"flag write {self.describe()} answered HTTP {response.status_code}: "
                f"{response.text[:200]}; the flag may not have changed"
            )

    def close(self) -> None:
        self._http.close()


def open_backend(spec: HttpFlag, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> HttpFlags:
    """The playbook's endpoint (a path joins the environment's ``service_url``), its token resolved."""
    return HttpFlags(spec, env.name, state_dir, env.service_url, secret(spec.token) if spec.token else None)


class HttpBackend(FlagPlugin):
    """The ``http`` flag backend, as a plugin."""

    name = "http"
    config = HttpFlag
    open = staticmethod(open_backend)
