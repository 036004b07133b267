"""The sandbox: wpbox's endpoints, request fields, response shapes and quirks, on localhost.

- ``POST {base}/sendtemplatemessage`` and ``POST {base}/sendmessage`` take the token in the JSON body;
  ``GET {base}/getTemplates`` and ``GET {base}/getSingleContact`` take it as a query parameter.
- A wrong token or an unknown template (by name *and* language) answers HTTP 200 with
  ``{"status":"error","message":...}``; missing fields answer 400 with Laravel-style ``errors``.
- ``/sandbox/*`` is the control API (bearer token = the sandbox's token): faults, recorded
  messages, stats, reset.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import re
import time
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rollout.booking.sandbox.faults import Faults, FaultsPatch

BASE_PATH = "/api/wpbox"
MAX_BODY = 256 * 1024
_PHONE = re.compile(r"^\+?\d{8,15}$")

DEFAULT_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "booking_confirmation",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "components": [
            {
                "type": "BODY",
                "text": (
                    "Hi {{1}}, your booking for {{2}} on {{3}} at {{4}} for {{5}} is confirmed. "
                    "Reference {{6}}, amount {{7}} paid by {{8}}."
                ),
            }
        ],
    },
    {
        "name": "hello_world",
        "language": "en_US",
        "status": "APPROVED",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hello World"}],
    },
]


def _param_count(template: dict[str, Any]) -> int:
    text = " ".join(c.get("text", "") for c in template.get("components", []) if c.get("type") == "BODY")
    return len(set(re.findall(r"\{\{(\d+)\}\}", text)))


class SandboxState:
    """Everything the sandbox remembers; reset by ``POST /sandbox/reset``."""

    def __init__(self, token: str, seed: int | None = None, templates: list[dict[str, Any]] | None = None) -> None:
        self.token = token
        self.seed = seed
        self.templates = templates or DEFAULT_TEMPLATES
        self.reset()

    def reset(self) -> None:
        self.faults = Faults()
        self.rng = random.Random(self.seed)
        self.messages: list[dict[str, Any]] = []
        self.next_id = 1
        self.stats = {
            "requests": 0,
            "accepted": 0,
            "errors": 0,
            "hung": 0,
            "http_5xx": 0,
            "rate_limited": 0,
            "malformed": 0,
        }

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def token_ok(self, given: Any) -> bool:
        """Is ``given`` the sandbox's token (compared in constant time)?"""
        return isinstance(given, str) and hmac.compare_digest(given.encode(), self.token.encode())

    async def network_faults(self) -> Response | None:
        """Faults that happen before wpbox's own logic runs."""
        f = self.faults
        self.stats["requests"] += 1
        if self.roll(f.hang_rate):
            self.stats["hung"] += 1
            await asyncio.sleep(f.hang_seconds)
            return PlainTextResponse("Gateway Timeout", 504)
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000.0)
        if self.roll(f.http_5xx_rate):
            self.stats["http_5xx"] += 1
            return PlainTextResponse("Service Unavailable", f.http_5xx_status)
        if self.roll(f.rate_limit_rate):
            self.stats["rate_limited"] += 1
            return JSONResponse(
                {"status": "error", "message": "Too Many Requests"},
                429,
                headers={"Retry-After": str(f.retry_after_seconds)},
            )
        return None

    def accept(self, data: dict[str, Any], kind: str, extra: dict[str, Any]) -> Response:
        """A send that passed wpbox's checks: refused for the phone or a drawn error, or recorded."""
        f = self.faults
        phone = str(data["phone"])
        digits = phone.lstrip("+")
        if not _PHONE.match(phone) or digits in f.reject_phones:
            self.stats["errors"] += 1
            return _error(f"(#{f.reject_code if digits in f.reject_phones else 131026}) Message Undeliverable.")
        if self.roll(f.error_rate):
            self.stats["errors"] += 1
            return _error(f.error_message)
        message_id = self.next_id
        self.next_id += 1
        wamid = None if self.roll(f.null_wamid_rate) else f"wamid.SANDBOX{message_id:012d}"
        self.messages.append(
            {"id": message_id, "wamid": wamid, "kind": kind, "phone": phone, "ts": time.time(), **extra}
        )
        self.stats["accepted"] += 1
        if self.roll(f.malformed_rate):
            self.stats["malformed"] += 1
            return PlainTextResponse("<html><body>502 Bad Gateway</body></html>", 200)
        return JSONResponse({"status": "success", "message_id": message_id, "message_wamid": wamid})


def _error(message: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"status": "error", "message": message}, status)


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return JSONResponse({"status": "error", "message": "Payload too large"}, 413)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return JSONResponse({"status": "error", "message": "Malformed JSON"}, 400)
    if not isinstance(data, dict):
        return JSONResponse({"status": "error", "message": "Malformed JSON"}, 400)
    return data


def _validate(data: dict[str, Any], required: tuple[str, ...]) -> Response | None:
    errors = {
        name: [f"The {name.replace('_', ' ')} field is required."] for name in required if data.get(name) in (None, "")
    }
    if errors:
        return JSONResponse({"status": "error", "errors": errors}, 400)
    return None


async def _send_request(request: Request, state: SandboxState, required: tuple[str, ...]) -> dict[str, Any] | Response:
    """A send's body, once the network faults, the token and the required fields let it through; else
    the answer wpbox gives instead."""
    data = await _body(request)  # read first: a slow provider has the request, then dawdles
    fault = await state.network_faults()
    if fault is not None:
        return fault
    if isinstance(data, Response):
        return data
    if not state.token_ok(data.get("token")):
        state.stats["errors"] += 1
        return _error("Invalid token")
    invalid = _validate(data, required)
    if invalid is not None:
        state.stats["errors"] += 1
        return invalid
    return data


async def send_template(request: Request) -> Response:
    state = _state(request)
    data = await _send_request(request, state, ("phone", "template_name", "template_language"))
    if isinstance(data, Response):
        return data
    template = next(
        (
            t
            for t in state.templates
            if t["name"] == data["template_name"]
            and t["language"] == data["template_language"]
            and t["status"] == "APPROVED"
        ),
        None,
    )
    if template is None:
        state.stats["errors"] += 1
        return _error("Invalid template")
    components = data.get("components") or []
    params = [
        p.get("text")
        for c in components
        if isinstance(c, dict) and c.get("type") == "body"
        for p in c.get("parameters", [])
        if isinstance(p, dict)
    ]
    if len(params) != _param_count(template):
        state.stats["errors"] += 1
        return _error("(#132000) Number of parameters does not match the expected number of params")
    return state.accept(
        data, "template", {"template_name": template["name"], "language": template["language"], "parameters": params}
    )


async def send_message(request: Request) -> Response:
    state = _state(request)
    data = await _send_request(request, state, ("phone", "message"))
    if isinstance(data, Response):
        return data
    return state.accept(data, "text", {"message": str(data["message"])[:4096]})


async def get_templates(request: Request) -> Response:
    state = _state(request)
    fault = await state.network_faults()
    if fault is not None:
        return fault
    if not state.token_ok(request.query_params.get("token")):
        return _error("Invalid token")
    return JSONResponse({"status": "success", "templates": state.templates})


async def get_single_contact(request: Request) -> Response:
    state = _state(request)
    fault = await state.network_faults()
    if fault is not None:
        return fault
    if not state.token_ok(request.query_params.get("token")):
        return _error("Invalid token")
    phone = request.query_params.get("phone", "")
    if not phone:
        return JSONResponse({"status": "error", "errors": {"phone": ["The phone field is required."]}}, 400)
    sent = [m for m in state.messages if m["phone"].lstrip("+") == phone.lstrip("+")]
    if not sent:
        return _error("Contact not found")
    return JSONResponse({"status": "success", "contact": {"phone": phone, "messages": len(sent)}})


def _control_ok(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    return header.lower().startswith("bearer ") and _state(request).token_ok(header[7:])


def _unauthorized() -> Response:
    return JSONResponse(
        {"error": "unauthorized", "detail": "control endpoints need 'Authorization: Bearer TOKEN'"}, 401
    )


async def faults(request: Request) -> Response:
    state = _state(request)
    if not _control_ok(request):
        return _unauthorized()
    if request.method in ("PUT", "PATCH"):
        data = await _body(request)
        if isinstance(data, Response):
            return data
        try:
            if request.method == "PUT":
                state.faults = Faults(**data)
            else:
                patch = FaultsPatch(**data).model_dump(exclude_none=True)
                state.faults = Faults(**{**state.faults.model_dump(), **patch})
        except ValidationError as exc:
            fields = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()}
            return JSONResponse({"error": "invalid_faults", "fields": fields}, 422)
    return JSONResponse(state.faults.model_dump())


async def messages(request: Request) -> Response:
    state = _state(request)
    if not _control_ok(request):
        return _unauthorized()
    if request.method == "DELETE":
        state.messages.clear()
        return JSONResponse({"messages": []})
    try:
        since = int(request.query_params.get("since_id", "0"))
    except ValueError:
        return JSONResponse({"error": "invalid_request", "fields": {"since_id": "must be an integer"}}, 422)
    return JSONResponse({"messages": [m for m in state.messages if m["id"] > since]})


async def stats(request: Request) -> Response:
    state = _state(request)
    if not _control_ok(request):
        return _unauthorized()
    return JSONResponse({**state.stats, "messages": len(state.messages)})


async def reset(request: Request) -> Response:
    state = _state(request)
    if not _control_ok(request):
        return _unauthorized()
    state.reset()
    return JSONResponse({"reset": True})


async def root(request: Request) -> Response:
    return JSONResponse({"sandbox": "zaptra-compatible", "base_url": BASE_PATH})


#: wpbox's API, as the service calls it
PROVIDER_ROUTES = [
    Route(f"{BASE_PATH}/sendtemplatemessage", send_template, methods=["POST"]),
    Route(f"{BASE_PATH}/sendmessage", send_message, methods=["POST"]),
    Route(f"{BASE_PATH}/getTemplates", get_templates, methods=["GET"]),
    Route(f"{BASE_PATH}/getSingleContact", get_single_contact, methods=["GET"]),
]
#: the sandbox's own control API (bearer token = the sandbox's token)
CONTROL_ROUTES = [
    Route("/sandbox/faults", faults, methods=["GET", "PUT", "PATCH"]),
    Route("/sandbox/messages", messages, methods=["GET", "DELETE"]),
    Route("/sandbox/stats", stats, methods=["GET"]),
    Route("/sandbox/reset", reset, methods=["POST"]),
]


def create_sandbox_app(token: str, seed: int | None = None) -> Starlette:
    """Build the sandbox app accepting ``token``; ``seed`` makes fault draws repeatable."""
    app = Starlette(routes=[*PROVIDER_ROUTES, *CONTROL_ROUTES, Route("/", root, methods=["GET"])])
    app.state.sandbox = SandboxState(token, seed)
    return app
