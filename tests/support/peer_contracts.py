"""How Argo Rollouts and Flagger read an HTTP answer, rebuilt from their sources for contract tests.

Argo Rollouts' ``web`` metric provider (``metricproviders/webmetric/webmetric.go``, 1.4 and later:
``method`` GET/POST/PUT, ``jsonBody``, ``jsonPath`` defaulting to ``{$}``): a status outside 2xx
is an **Error** measurement; a body that is JSON is reduced by ``jsonPath`` to ``result``, and
``utils/evaluate/evaluate.go`` decides with the metric's ``successCondition`` and
``failureCondition`` (expressions in antonmedv/expr):

- neither condition given: Successful;
- only ``successCondition``: Successful when it holds, else **Failed**;
- only ``failureCondition``: Failed when it holds, else Successful;
- both: Failed when the failure condition holds, Successful when the success condition holds,
  else **Inconclusive** (which pauses the rollout).

:func:`evaluate_condition` understands the subset of expr the Argo docs use: ``result``, field
access (``result.ok``), indexing (``result[0]``), string, number and boolean literals, ``nil``,
``== != < <= > >=``, ``&& || !`` (and ``and or not``), parentheses, ``asInt()``, ``asFloat()``
and ``isNil()``. Anything else raises ``ValueError`` (Argo: an Error measurement).

Flagger (``pkg/controller/webhook.go``): every webhook is a POST of ``{name, namespace, phase,
checksum, metadata}`` with ``Content-Type: application/json`` and no other header; an answer with
a status above 202 (or a timeout) is an error: the canary does not advance and, for ``rollout``
and ``pre-rollout`` hooks, the failed-checks counter rises; ``confirm-promotion`` waits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"


def argo_measurement(
    status: int, body: bytes, json_path: str = "{$}", success: str = "", failure: str = ""
) -> tuple[str, Any]:
    """The phase Argo Rollouts' web provider gives a measurement of this answer, and its ``result``."""
    if not 200 <= status < 300:
        return ERROR, None
    try:
        data = json.loads(body)
    except ValueError:
        return SUCCESSFUL, body.decode()  # webmetric.go: a body that is not JSON is taken as a string, Successful
    try:
        result = json_path_value(data, json_path)
    except KeyError:
        return ERROR, None
    try:
        ok = evaluate_condition(success, result) if success else False
        bad = evaluate_condition(failure, result) if failure else False
    except ValueError:
        return ERROR, result
    if not success and not failure:
        return SUCCESSFUL, result
    if success and not failure:
        bad = not ok
    elif failure and not success:
        ok = not bad
    if bad:
        return FAILED, result
    return (SUCCESSFUL if ok else INCONCLUSIVE), result


def json_path_value(data: Any, path: str) -> Any:
    """``{$.a.b[0]}`` (or ``{.a.b}``) applied to ``data``, as Kubernetes' jsonpath picks the first result."""
    match = re.fullmatch(r"\{\$?((?:\.[A-Za-z_][\w-]*|\[\d+\])*)\}", path.strip())
    if match is None:
        raise ValueError(f"unsupported jsonPath {path!r}")
    for part in re.findall(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]", match.group(1)):
        key, index = part
        if key:
            if not isinstance(data, dict) or key not in data:
                raise KeyError(key)
            data = data[key]
        else:
            if not isinstance(data, list) or int(index) >= len(data):
                raise KeyError(index)
            data = data[int(index)]
    return data


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!().\[\],])|(?P<name>[A-Za-z_]\w*))"
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot read {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "num":
            out.append(("lit", float(value) if "." in value else int(value)))
        elif kind == "str":
            out.append(("lit", value[1:-1].encode().decode("unicode_escape")))
        elif kind == "name" and value in ("true", "false", "nil"):
            out.append(("lit", {"true": True, "false": False, "nil": None}[value]))
        elif kind == "name" and value in ("and", "or", "not"):
            out.append(("op", {"and": "&&", "or": "||", "not": "!"}[value]))
        else:
            out.append((kind or "", value))
    return out


class _Parser:
    FUNCTIONS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "asInt": lambda v: int(float(v)),
        "asFloat": float,
        "isNil": lambda v: v is None,
    }

    def __init__(self, text: str, result: Any) -> None:
        self.tokens, self.at, self.result = _tokens(text), 0, result

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(f"expected {value or 'more'} at token {self.at}")
        self.at += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise ValueError(f"unexpected {self.peek()}")
        return value

    def or_(self) -> Any:
        return self.chain(self.and_, "||", lambda left, right: left or right)

    def and_(self) -> Any:
        return self.chain(self.not_, "&&", lambda left, right: left and right)

    def chain(self, operand: Callable[[], Any], op: str, combine: Callable[[bool, bool], bool]) -> Any:
        """``operand (op operand)*``: both sides are evaluated and must be booleans, as in expr."""
        value = operand()
        while self.peek() == ("op", op):
            self.take()
            right = operand()
            value = combine(_truth(value), _truth(right))
        return value

    def not_(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not _truth(self.not_())
        return self.compare()

    def compare(self) -> Any:
        left = self.primary()
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] in ("==", "!=", "<", "<=", ">", ">="):
            self.take()
            right = self.primary()
            if token[1] == "==":
                return left == right
            if token[1] == "!=":
                return left != right
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
                raise ValueError(f"cannot compare {left!r} {token[1]} {right!r}")
            return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[token[1]]
        return left

    def primary(self) -> Any:
        kind, value = self.take()
        if kind == "lit":
            return value
        if value == "(":
            inner = self.or_()
            self.take(")")
            return inner
        if kind == "name" and value in self.FUNCTIONS:
            self.take("(")
            argument = self.or_()
            self.take(")")
            return self.FUNCTIONS[value](argument)
        if kind == "name" and value == "result":
            current = self.result
            while self.peek() in (("op", "."), ("op", "[")):
                if self.take()[1] == ".":
                    field = self.take()[1]
                    current = current.get(field) if isinstance(current, dict) else None
                else:
                    index = self.take()[1]
                    self.take("]")
                    current = current[index] if isinstance(current, list) and index < len(current) else None
            return current
        raise ValueError(f"unknown name {value!r}")


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected bool, but got {type(value).__name__}")
    return value


def evaluate_condition(condition: str, result: Any) -> bool:
    """Evaluate an Argo ``successCondition``/``failureCondition`` on ``result`` (see the module docstring)."""
    value = _Parser(condition, result).parse()
    if not isinstance(value, bool):
        raise ValueError(f"expected bool, but got {type(value).__name__}")
    return value


def flagger_payload(name: str, namespace: str, phase: str, metadata: dict[str, str] | None) -> bytes:
    """The body Flagger POSTs (``CanaryWebhookPayload``, Go's ``json.Marshal``: fields in declaration
    order, ``metadata`` left out when it has none)."""
    body: dict[str, Any] = {"name": name, "namespace": namespace, "phase": phase, "checksum": "5b7d9c8f6a"}
    if metadata:
        body["metadata"] = metadata
    return json.dumps(body, separators=(",", ":")).encode()


#: the only header Flagger sets on a webhook call
FLAGGER_HEADERS = {"Content-Type": "application/json"}


def flagger_advances(status: int) -> bool:
    """Does Flagger take this status as a passed webhook? (``webhook.go``: ``r.StatusCode > 202`` is an error.)"""
    return status <= 202
