"""What a Prometheus server already knows about a service, and the gates it makes (``rollout init``).

:func:`scan` reads the server's metric names (``/api/v1/label/__name__/values``), their metadata
(``/api/v1/metadata``: type and help) and the labels of their series (``/api/v1/series``).
:func:`propose` recognises the common shapes, purely:

- a request counter with a status or code label (``http_requests_total{code="500"}``), or an error
  counter beside a request counter (``shop_errors_total`` and ``shop_requests_total``): an error rate;
- a latency histogram (``_bucket`` with ``le``, ``_sum``, ``_count``): its p95 in milliseconds;
- a label that tells the cohorts apart (``variant="new|old"``, ``cohort="treatment|control"``) on the
  request counter: the same error rate, treatment against control.

:func:`try_once` runs a proposal's queries once through the same code a gate uses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import httpx

from rollout.playbook.model import CohortLabels, MetricGate
from rollout.playbook.scaffold import Proposal
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.errors import MeasurementError, RolloutError

#: labels that are where a series comes from, not what it counts
_SOURCE_LABELS = {"__name__", "job", "instance", "le", "quantile"}
STATUS_LABELS = ("code", "status", "status_code", "http_status", "response_code", "status_class", "outcome", "result")
_ERROR_WORDS = {"error", "errors", "failed", "failure", "fail", "exception", "timeout"}
COHORT_LABELS = ("cohort", "variant", "arm", "treatment", "experiment", "group", "flag")
#: value pairs that say "the new thing" and "the old thing", treatment first
COHORT_PAIRS = (
    ("treatment", "control"),
    ("new", "old"),
    ("canary", "stable"),
    ("canary", "baseline"),
    ("canary", "primary"),
    ("variant", "control"),
    ("test", "control"),
    ("experiment", "control"),
    ("on", "off"),
    ("enabled", "disabled"),
    ("true", "false"),
    ("b", "a"),
)
#: at most this many series per metric are read for their labels
SERIES_LIMIT = 200
#: metrics of the plumbing (Prometheus itself, Go and process runtimes, exporters): chosen last, so a
#: Prometheus that scrapes itself does not propose its own HTTP API as the service's error rate
INFRASTRUCTURE = ("prometheus_", "promhttp_", "go_", "process_", "net_conntrack_", "scrape_", "alertmanager_")


def _order(family: Family, words: tuple[str, ...]) -> tuple[bool, bool, str]:
    """The service's own metrics first, those named with ``words`` before others, then by name."""
    return (family.name.startswith(INFRASTRUCTURE), not any(w in family.name for w in words), family.name)


class DiscoveryError(RolloutError):
    """The metrics source cannot be read (down, not Prometheus, refused)."""


@dataclass
class Family:
    """A metric as Prometheus knows it: its name, type, help and the labels of its series."""

    name: str
    type: str = "unknown"
    help: str = ""
    labels: dict[str, list[str]] = field(default_factory=dict)


def scan(url: str, selector: str = "", timeout: float = 10.0, token: str | None = None) -> list[Family]:
    """The metric families at ``url`` (only series matching ``selector``, e.g. ``job="shop"``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers) as http:
        names = _get(http, "/api/v1/label/__name__/values", {})
        metadata = _get(http, "/api/v1/metadata", {})
        if not isinstance(names, list) or not isinstance(metadata, dict):
            raise DiscoveryError(f"{url}: not a Prometheus API answer")
        families: dict[str, Family] = {}
        for name in sorted(n for n in names if isinstance(n, str)):
            family_name, kind = _family_of(name, metadata)
            family = families.setdefault(family_name, Family(family_name, kind, _help(metadata, family_name)))
            if name != family_name and not name.endswith("_bucket"):
                continue  # a histogram's labels are read from its _bucket series
            if kind not in ("counter", "histogram"):
                continue  # no shape below reads a gauge's labels: one request fewer per gauge
            series = _get(http, "/api/v1/series", {"match[]": _selector(name, selector), "limit": str(SERIES_LIMIT)})
            for labels in series if isinstance(series, list) else []:
                for key, value in labels.items() if isinstance(labels, dict) else ():
                    if key not in _SOURCE_LABELS:
                        seen = family.labels.setdefault(key, [])
                        if value not in seen:
                            seen.append(value)
        return [f for f in families.values() if f.type != "histogram" or f"{f.name}_bucket" in names]


def _get(http: httpx.Client, path: str, params: dict[str, str]) -> object:
    try:
        answer = http.get(path, params=params)
        body = answer.json()
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"{http.base_url}: unreachable ({type(exc).__name__})") from exc
    except ValueError as exc:
        raise DiscoveryError(f"{http.base_url}{path}: not JSON (HTTP {answer.status_code}); is it Prometheus?") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error", "no message") if isinstance(body, dict) else "not an object"
        raise DiscoveryError(f"{http.base_url}{path}: {str(error)[:200]}")
    return body.get("data")


def _family_of(name: str, metadata: dict) -> tuple[str, str]:
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and _type(metadata, base) == "histogram":
            return base, "histogram"
    return name, _type(metadata, name) or ("counter" if name.endswith("_total") else "unknown")


def _type(metadata: dict, name: str) -> str | None:
    entries = metadata.get(name) or metadata.get(name.removesuffix("_total"))
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        return str(entries[0].get("type") or "") or None
    return None


def _help(metadata: dict, name: str) -> str:
    entries = metadata.get(name) or metadata.get(name.removesuffix("_total"))
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        return str(entries[0].get("help") or "")
    return ""


def _selector(name: str, *matchers: str) -> str:
    inner = ",".join(m for m in matchers if m)
    return f"{name}{{{inner}}}" if inner else name


def propose(families: list[Family], selector: str = "") -> tuple[list[Proposal], str]:
    """Gates from ``families``: an error rate, a p95 latency, and treatment against control where a
    label tells the cohorts apart. Returns them with a sentence of what was seen when none fit."""
    counters = [f for f in families if f.type == "counter"]
    histograms = [f for f in families if f.type == "histogram"]
    proposals: list[Proposal] = []
    errors = _error_rate(counters, selector)
    if errors is not None:
        proposals += errors
    latency = _latency(histograms, selector)
    if latency is not None:
        proposals.append(latency)
    if proposals:
        return proposals, ""
    seen = ", ".join(f"{f.name} ({f.type})" for f in families[:12]) or "no metrics at all"
    return [], (
        "no request counter with a status label, error counter or latency histogram was recognised; "
        f"seen: {seen}{' ...' if len(families) > 12 else ''}"
    )


def _error_rate(counters: list[Family], selector: str) -> list[Proposal] | None:
    for family in sorted(counters, key=lambda f: _order(f, ("request",))):
        for label in STATUS_LABELS:
            bad = _error_matcher(family.labels.get(label, []))
            if bad is None:
                continue
            name, is_bad = family.name, f'{label}=~"{bad}"'
            return _errors_and_compare(
                partial(_selector, name, selector, is_bad),
                partial(_selector, name, selector),
                f"from {name}, a counter with a {label} label ({', '.join(family.labels[label][:6])}): "
                f"{is_bad} counted as errors",
                "which answers count as errors, and the thresholds (1% passes, 5% fails)",
                _cohort(family, exclude=label),
            )
    return _error_counter_pair(counters, selector)


def _error_counter_pair(counters: list[Family], selector: str) -> list[Proposal] | None:
    """``shop_errors_total`` beside ``shop_requests_total``: errors over requests."""
    for bad in sorted(counters, key=lambda f: f.name):
        if not any(word in bad.name for word in ("error", "fail")):
            continue
        stem = _stem(bad.name)
        total = next((f for f in counters if f is not bad and _stem(f.name) == stem and "request" in f.name), None)
        if total is None:
            continue
        cohort = _cohort(total)
        return _errors_and_compare(
            partial(_selector, bad.name, selector),
            partial(_selector, total.name, selector),
            f"from two counters: {bad.name} (errors) over {total.name} (requests)",
            "that every error is also counted as a request, and the thresholds (1% passes, 5% fails)",
            cohort if cohort is not None and cohort[0] in bad.labels else None,
        )
    return None


def _errors_and_compare(
    errors: Callable[[str], str],
    requests: Callable[[str], str],
    source: str,
    review: str,
    cohort: tuple[str, tuple[str, str]] | None,
) -> list[Proposal]:
    """An error rate from two selectors (each takes one more label matcher), and, where a label tells
    the cohorts apart, the same errors treatment against control."""
    found = [
        Proposal(
            "error_rate",
            "rate",
            f"sum(increase({errors('')}[$window]))",
            f"sum(increase({requests('')}[$window]))",
            "1%",
            "5%",
            source,
            review,
        )
    ]
    if cohort is not None:
        key, (treatment, control) = cohort
        which = f'{key}="$cohort"'
        found.append(
            Proposal(
                "error_rate_vs_control",
                "compare",
                f"sum(increase({errors(which)}[$window]))",
                f"sum(increase({requests(which)}[$window]))",
                "0.5%",
                "2%",
                f"the same errors, label {key}: {treatment!r} (treatment) against {control!r} (control)",
                f"that {key}={treatment!r} marks the customers who get the feature; the margins "
                "(how much worse than the control the treatment may be)",
                cohorts=(treatment, control),
            )
        )
    return found


def _stem(name: str) -> str:
    words = name.removesuffix("_total").split("_")
    return "_".join(words[:-1]) if len(words) > 1 else name


def _error_matcher(values: list[str]) -> str | None:
    """The regex that selects error answers among a status label's values, if it can be told."""
    if not values:
        return None
    if all(re.fullmatch(r"[1-5][0-9x]{2}", v, flags=re.I) for v in values):
        return "5.."
    words = [v for v in values if v.lower() in _ERROR_WORDS]
    return "|".join(sorted(words)) if words else None


def _cohort(family: Family, exclude: str = "") -> tuple[str, tuple[str, str]] | None:
    """A label whose two values name a treatment and a control, and which is which."""
    for label, values in sorted(family.labels.items(), key=lambda kv: kv[0] not in COHORT_LABELS):
        if label == exclude or len(values) != 2:
            continue
        lowered = {v.lower(): v for v in values}
        for treatment, control in COHORT_PAIRS:
            if set(lowered) == {treatment, control}:
                return label, (lowered[treatment], lowered[control])
    return None


def _latency(histograms: list[Family], selector: str) -> Proposal | None:
    preferred = sorted(histograms, key=lambda f: _order(f, ("duration", "latency", "seconds", "time")))
    for family in preferred:
        milliseconds = family.name.endswith(("_milliseconds", "_ms"))
        scale = "" if milliseconds else "1000 * "
        unit = "milliseconds" if milliseconds else "seconds (the Prometheus convention), shown in ms"
        return Proposal(
            "p95_latency_ms",
            "latency",
            f"{scale}histogram_quantile(0.95, sum by (le) (rate({_selector(family.name + '_bucket', selector)}[$window])))",
            f"sum(increase({_selector(family.name + '_count', selector)}[$window]))",
            "500",
            "2000",
            f"from {family.name}, a histogram in {unit}: its 95th percentile",
            "the unit, and the thresholds in ms (about 2x and 5x the value measured at init, when there was one)",
        )
    return None


def try_once(url: str, proposal: Proposal, now: float, window: float = 300.0, token: str | None = None) -> str:
    """Run ``proposal``'s queries once, as a gate would at ``now``; say what came back. A latency
    with a value sets its thresholds from it (target about twice today's, alert five times)."""
    spec = MetricGate(
        metric=proposal.metric,
        provider="prom",
        kind=proposal.kind,
        query=proposal.query,
        samples=proposal.samples,
        target=0.5 if proposal.kind == "rate" else 0.005 if proposal.kind == "compare" else 500,
        alert=0.9 if proposal.kind == "rate" else 0.02 if proposal.kind == "compare" else 2000,
        cohorts=CohortLabels(treatment=proposal.cohorts[0], control=proposal.cohorts[1]) if proposal.cohorts else None,
    )
    metrics = PrometheusMetrics(url, token, 10.0, "prom")
    try:
        got = metrics.measure(spec, window, now, 50)
    except MeasurementError as exc:
        return f"FAILED: {exc}"
    finally:
        metrics.close()
    if got.cohorts is not None:
        (t, control) = got.cohorts
        shown = [f"{'no data' if c.value is None else f'{c.value:.2%}'} of {c.samples}" for c in (t, control)]
        return f"treatment {shown[0]}, control {shown[1]} over {window:g}s"
    if got.value is None:
        return f"no data over {window:g}s (no traffic yet, or the query selects nothing)"
    if proposal.kind == "latency":
        proposal.target, proposal.alert = _nice(2 * got.value), _nice(5 * got.value)
        return f"{got.value:.1f} ms from {got.samples} observations over {window:g}s"
    return f"{got.value:.2%} of {got.samples} requests over {window:g}s"


def _nice(ms: float) -> str:
    """A round threshold at or above ``ms``: 1, 2 or 5 times a power of ten, at least 10 ms."""
    ms = max(ms, 10.0)
    power = 10 ** math.floor(math.log10(ms))
    return str(next(int(step * power) for step in (1, 2, 5, 10) if step * power >= ms))
