"""The agent's verdict API, contract-tested as Argo Rollouts' ``web`` metric provider and Flagger's
webhooks call it: a real agent (its controller running, its app served on loopback) judging a gate
set of a real project against a real provider (the team service's ``/stats`` over HTTP), answers
read the way those tools read them (``tests/support/peer_contracts.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from rollout.agent.server import create_agent_app
from rollout.agent.verdicts import FLAGGER_STATUS, agent_token
from rollout.util.errors import ConfigError
from rollout.util.serving import ServerThread
from tests.support.flagservice import FlagService
from tests.support.peer_contracts import (
    ERROR,
    FAILED,
    FLAGGER_HEADERS,
    INCONCLUSIVE,
    SUCCESSFUL,
    argo_measurement,
    flagger_advances,
    flagger_payload,
)
from tests.support.verdict_harness import AGENT_TOKEN, STATS_SECRET, VerdictAgent

# Argo Rollouts' AnalysisTemplate metric as docs/agent.md shows it
JSON_PATH, SUCCESS, FAILURE = "{$.verdict}", 'result == "pass"', 'result == "fail"'
#: the team service's /stats, per verdict: the error rate and the count it is over
HEALTHY, BREACH, TOO_FEW, DOWN = (
    {"rate": 0.0, "n": 400},
    {"rate": 0.4, "n": 400},
    {"rate": 0.0, "n": 3},
    {"stats_status": 503},
)


@pytest.fixture(scope="module")
def running(flag_service: FlagService, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VerdictAgent]:
    agent = VerdictAgent(tmp_path_factory.mktemp("verdicts"), flag_service, {"ROLLOUT_AGENT_TOKEN": AGENT_TOKEN})
    yield agent
    agent.close()


@pytest.fixture
def svc(flag_service: FlagService) -> FlagService:
    return flag_service.reset()


#: one agent for the module: its tests run on one worker
pytestmark = pytest.mark.xdist_group("agent_verdicts")

BEARER = {"Authorization": f"Bearer {AGENT_TOKEN}"}


def argo_get(running: VerdictAgent, path: str = "/v1/verdict/checkout/production/guard") -> httpx.Response:
    """A call as Argo's web provider makes it with the template's ``headers`` (GET, the default)."""
    return running.http.get(path, headers=BEARER)


def flagger_post(
    running: VerdictAgent, path: str, phase: str = "Progressing", token: str | None = AGENT_TOKEN
) -> httpx.Response:
    """A call as Flagger makes it: its payload, Content-Type, no other header; the token in metadata."""
    body = flagger_payload("podinfo", "test", phase, {"token": token} if token else None)
    return running.http.post(path, content=body, headers=FLAGGER_HEADERS)


def test_argo_reads_pass_fail_and_hold_as_successful_failed_and_inconclusive(running, svc):
    for stats, verdict, phase in (
        (HEALTHY, "pass", SUCCESSFUL),
        (BREACH, "fail", FAILED),
        (TOO_FEW, "hold", INCONCLUSIVE),
        (DOWN, "hold", INCONCLUSIVE),
    ):
        svc.reset(**stats)
        answer = argo_get(running)
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json", answer.text
        assert answer.json()["verdict"] == verdict, (stats, answer.json()["summary"])
        assert argo_measurement(200, answer.content, JSON_PATH, SUCCESS, FAILURE) == (phase, verdict)
        # with a successCondition alone, Argo takes everything else for a failure: a hold would abort
        if verdict == "hold":
            assert argo_measurement(200, answer.content, JSON_PATH, SUCCESS)[0] == FAILED
    # the last one: the provider is down, said with the metric, never a pass
    assert "HTTP 503" in answer.json()["summary"] and answer.json()["metrics"][0]["samples"] == 0


def test_argo_may_post_or_put_a_json_body_and_read_the_whole_answer(running, svc):
    """``method: POST`` with ``jsonBody`` (Argo sets Content-Type), ``PUT`` with a string body, and
    conditions over the whole answer (no jsonPath: ``{$}``) as the Argo docs write them."""
    svc.reset(**HEALTHY)
    posted = running.http.post(
        "/v1/verdict/checkout/production/guard",
        content=json.dumps({"service": "checkout"}),
        headers={**BEARER, "Content-Type": "application/json"},
    )
    put = running.http.put("/v1/verdict/checkout/production/guard", content="{}", headers=BEARER)
    for answer in (posted, put):
        assert answer.status_code == 200, answer.text
        assert (
            argo_measurement(200, answer.content, "{$}", 'result.verdict == "pass"', 'result.verdict == "fail"')[0]
            == SUCCESSFUL
        )
        assert (
            argo_measurement(200, answer.content, "{$.metrics[0]}", "result.samples >= 20 && result.value <= 0.01")[0]
            == SUCCESSFUL
        )


def test_the_gate_is_measured_now_over_its_window_by_the_environments_provider_with_its_secret(running, svc):
    svc.reset(**HEALTHY)
    answer = running.http.get("/v1/verdict/checkout/production/guard?percent=25", headers=BEARER).json()
    assert (answer["project"], answer["environment"], answer["gate"]) == ("checkout", "production", "guard")
    assert (answer["window_s"], answer["percent"]) == (600.0, 25)
    metric = answer["metrics"][0]
    assert (metric["metric"], metric["samples"], metric["min_samples"], metric["provider"]) == (
        "errors",
        400,
        20,
        "stats",
    )
    # the provider was asked once, over the gate's window, at the canary's share, with its token
    assert svc.stats_calls == [{"query": {"window": "600", "percent": "25"}, "authorization": f"Bearer {STATS_SECRET}"}]
    # another gate set, another environment: its own window
    svc.reset(**HEALTHY)
    quick = running.http.get("/v1/verdict/checkout/staging/quick", headers=BEARER).json()
    assert quick["verdict"] == "pass" and svc.stats_calls[0]["query"] == {"window": "30"}
    # the secret reaches the provider and nothing else
    assert STATS_SECRET not in json.dumps(answer) + json.dumps(quick) + running.logged.getvalue()


def test_flagger_advances_only_on_a_pass(running, svc):
    """Flagger sends the same payload for every hook type (the type is not in it; the phase is):
    a pass is 200, a fail 412 and a hold 503, and only the pass lets the canary advance
    (``rollout``/``pre-rollout``: the others count a failed check; ``confirm-promotion``: they wait)."""
    for stats, verdict, phase in (
        (HEALTHY, "pass", "Progressing"),
        (BREACH, "fail", "Progressing"),
        (TOO_FEW, "hold", "WaitingPromotion"),
    ):
        svc.reset(**stats)
        answer = flagger_post(running, "/v1/flagger/checkout/production/guard", phase)
        assert (answer.status_code, answer.json()["verdict"]) == (FLAGGER_STATUS[verdict], verdict), answer.text
        assert flagger_advances(answer.status_code) is (verdict == "pass")
    served = running.events("verdict_served")[-1]
    assert (served["caller"], served["canary"], served["checksum"], served["verdict"]) == (
        "flagger",
        "test/podinfo",
        "5b7d9c8f6a",
        "hold",
    )
    assert served["environment"] == "production" and "HOLD guard of checkout" in served["message"]


def test_a_payload_of_an_older_flagger_without_checksum_is_judged(running, svc):
    svc.reset(**HEALTHY)
    body = {"name": "podinfo", "namespace": "test", "phase": "Progressing", "metadata": {"token": AGENT_TOKEN}}
    answer = running.http.post("/v1/flagger/checkout/production/guard", json=body)
    assert answer.status_code == 200 and flagger_advances(answer.status_code)


def test_answering_writes_nothing_to_the_flag_or_the_environments_state(running, svc):
    svc.reset(enabled=True, percent=25, **BREACH)
    before = (
        running.store.get("production"),
        running.store.audit_log("production"),
        running.store.verdicts("production"),
    )
    assert argo_get(running).json()["verdict"] == "fail"
    assert flagger_post(running, "/v1/flagger/checkout/production/guard").status_code == 412
    after = (
        running.store.get("production"),
        running.store.audit_log("production"),
        running.store.verdicts("production"),
    )
    assert after == before and before[1] == [] and before[2] == []
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 25)  # a fail here is the caller's to act on
    assert len(svc.stats_calls) == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "says"),
    [
        (
            "GET",
            "/v1/verdict/shop/production/guard",
            None,
            BEARER,
            404,
            "no project named 'shop' (this agent serves: checkout)",
        ),
        (
            "GET",
            "/v1/verdict/checkout/qa/guard",
            None,
            BEARER,
            404,
            "has no environment 'qa' (its environments: staging, production, dark)",
        ),
        (
            "GET",
            "/v1/verdict/checkout/production/speed",
            None,
            BEARER,
            404,
            "has no gate set 'speed' (its gates: guard, quick)",
        ),
        (
            "GET",
            "/v1/verdict/checkout/production/guard?percent=150",
            None,
            BEARER,
            400,
            "percent: expected a whole number from 0 to 100, got '150'",
        ),
        ("POST", "/v1/verdict/checkout/production/guard", b"service=checkout", BEARER, 400, "the body is not JSON"),
        ("GET", "/v1/verdict/checkout/production/guard", None, {}, 401, "missing or wrong token"),
        (
            "GET",
            "/v1/verdict/checkout/production/guard",
            None,
            {"Authorization": "Bearer not-the-token-at-all"},
            401,
            "missing or wrong token",
        ),
        ("POST", "/v1/flagger/checkout/production/guard", b"<html>", BEARER, 400, "the body is not JSON"),
        (
            "POST",
            "/v1/flagger/checkout/production/guard",
            b'{"namespace": "test", "phase": "Progressing"}',
            BEARER,
            400,
            "not Flagger's webhook payload: name: Field required",
        ),
        (
            "POST",
            "/v1/flagger/checkout/production/guard",
            b'{"name": "p", "namespace": "t", "phase": "P", "metadata": {"n": 1}}',
            BEARER,
            400,
            "metadata.n: Input should be a valid string",
        ),
        (
            "POST",
            "/v1/flagger/checkout/production/guard",
            flagger_payload("p", "t", "Progressing", None),
            FLAGGER_HEADERS,
            401,
            "(Flagger: metadata.token)",
        ),
        (
            "POST",
            "/v1/flagger/checkout/production/guard",
            flagger_payload("p", "t", "Progressing", {"token": "wrong"}),
            FLAGGER_HEADERS,
            401,
            "missing or wrong token",
        ),
        (
            "GET",
            "/v1/flagger/checkout/production/guard",
            None,
            BEARER,
            405,
            "GET is not how Flagger calls a webhook: POST its payload",
        ),
        ("GET", "/v1/verdict/checkout/dark/quick", None, BEARER, 500, "dark cannot be evaluated:"),
    ],
)
def test_bad_requests_get_one_json_error_line_that_both_tools_take_for_no(
    running, svc, method, path, body, headers, status, says
):
    answer = running.http.request(method, path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert list(error) == ["error"] and says in error["error"] and "\n" not in error["error"], error
    assert argo_measurement(answer.status_code, answer.content, JSON_PATH, SUCCESS, FAILURE)[0] == ERROR
    assert not flagger_advances(answer.status_code)
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
    if status == 500:  # a missing environment file is named, as on the command line
        assert "dark.yaml: no such environment 'dark'" in error["error"]
        assert any("verdict API: dark cannot be evaluated" in e["message"] for e in running.events("error"))


def test_metrics_count_the_verdicts_served_and_healthz_needs_no_token(running, svc):
    svc.reset(**HEALTHY)
    argo_get(running)
    running.http.get("/v1/verdict/checkout/production/guard")  # no token: refused
    health = running.http.get("/healthz")  # a probe never needs the token
    assert health.json()["agent"] == "verdict-agent"
    exposition = running.http.get("/metrics").text
    assert 'rollout_agent_verdicts_served_total{answer="pass",caller="argo"}' in exposition
    assert 'rollout_agent_verdicts_served_total{answer="refused",caller="argo"}' in exposition


def test_on_loopback_without_a_token_the_api_is_open_to_this_machine_only(running, svc):
    svc.reset(**HEALTHY)
    server = ServerThread(create_agent_app(running.agent, {})).start()
    try:
        answer = httpx.post(
            f"{server.url}/v1/flagger/checkout/staging/quick",
            content=flagger_payload("podinfo", "test", "Progressing", None),
            headers=FLAGGER_HEADERS,
        )
        assert answer.status_code == 200 and answer.json()["verdict"] == "pass"
    finally:
        server.stop()


def test_the_token_rules():
    assert (
        agent_token("127.0.0.1", {}) is None and agent_token("::1", {}) is None and agent_token("localhost", {}) is None
    )
    assert agent_token("0.0.0.0", {"ROLLOUT_AGENT_TOKEN": AGENT_TOKEN}) == AGENT_TOKEN
    with pytest.raises(
        ConfigError, match=r"listening on 0\.0\.0\.0 \(not loopback\) needs a token .*ROLLOUT_AGENT_TOKEN"
    ):
        agent_token("0.0.0.0", {})
    with pytest.raises(ConfigError, match="needs a token"):
        agent_token("10.0.0.7", {"ROLLOUT_AGENT_TOKEN": ""})
    with pytest.raises(ConfigError, match="ROLLOUT_AGENT_TOKEN must be at least 16 characters"):
        agent_token("127.0.0.1", {"ROLLOUT_AGENT_TOKEN": "short"})


def test_the_argo_reader_agrees_with_argos_documented_examples():
    """tests/support/peer_contracts.py against the examples of Argo's web.md and the rules of its evaluate.go."""
    body = json.dumps({"data": {"ok": True, "successPercent": 0.95}}).encode()
    assert argo_measurement(200, body, "{$.data.ok}", "result == true") == (SUCCESSFUL, True)
    assert argo_measurement(200, body, "{$.data}", "result.ok && result.successPercent >= 0.90")[0] == SUCCESSFUL
    assert argo_measurement(200, body, "{$.data}", "result.ok && result.successPercent >= 0.99")[0] == FAILED
    assert argo_measurement(200, b"[0.96]", "{$}", "result[0] >= 0.95")[0] == SUCCESSFUL
    # neither condition: Successful; a failure condition alone: Successful unless it holds
    assert argo_measurement(200, b'"hold"')[0] == SUCCESSFUL
    assert argo_measurement(200, b'"hold"', failure='result == "fail"')[0] == SUCCESSFUL
    assert argo_measurement(200, b'"fail"', failure='result == "fail"')[0] == FAILED
    # a jsonPath that finds nothing, a condition that is no boolean or cannot be read: Error
    assert argo_measurement(200, body, "{$.verdict}", SUCCESS)[0] == ERROR
    assert argo_measurement(200, body, "{$.data}", "result.successPercent")[0] == ERROR
    assert argo_measurement(200, body, "{$.data}", "result.ok ===")[0] == ERROR
