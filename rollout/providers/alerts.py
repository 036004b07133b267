"""Alerts a team already has, as gate metrics (``kind: alert``): Alertmanager's API v2 here, and the
selector both sources share. Prometheus' own ``ALERTS`` series are read by
:class:`~rollout.providers.prometheus.PrometheusMetrics`, which checks first that the rule is loaded.

What "no data" is for an alert (a hold, never a pass): the source unreachable or answering nonsense,
and, in Prometheus, no loaded rule of that name or a rule that cannot be evaluated. "Not firing" is
a loaded, healthy rule (or a reachable Alertmanager) with no matching alert.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rollout.gates import Alerts, Reading
from rollout.playbook.model import MetricGate, ProviderSpec
from rollout.playbook.plugins import ProviderPlugin
from rollout.providers.base import HttpProvider
from rollout.util.bounded import json_of
from rollout.util.errors import MeasurementError


def alerts_selector(spec: MetricGate) -> str:
    """``ALERTS{alertname="X", <matchers>}``: every state, so pending and firing are told apart."""
    return "ALERTS{" + ", ".join([f'alertname="{spec.alertname}"', *spec.matchers]) + "}"


class AlertmanagerProvider(ProviderSpec):
    """Alertmanager's API v2 (``/api/v2/alerts``): only ``kind: alert`` metrics read it."""

    kind: Literal["alertmanager"] = "alertmanager"
    url: str = Field(pattern=r"^https?://")


class AlertmanagerAlerts(HttpProvider):
    """One Alertmanager (``url``), with an optional bearer token: ``GET /api/v2/alerts`` with the
    alert's name and matchers as filters. Active alerts fire; suppressed ones (silenced or
    inhibited) are told apart, and unprocessed ones count as pending."""

    def measure(self, spec: MetricGate, window: float, now: float, percent: int | None) -> Reading:
        if spec.kind != "alert" or spec.alertname is None:
            raise MeasurementError(f"{self.name}: an alertmanager provider reads only kind: alert metrics")
        filters = [f'alertname="{spec.alertname}"', *spec.matchers]
        response = self._get("/api/v2/alerts", "/api/v2/alerts", params=[("filter", f) for f in filters])
        if response.status_code != 200:
            raise MeasurementError(
                f"{self.name}: /api/v2/alerts answered HTTP {response.status_code}: {response.text[:200]}"
            )
        body = json_of(response, f"{self.name}: /api/v2/alerts", list, "a list of alerts")
        by_state: dict[str, list[dict[str, str]]] = {"active": [], "suppressed": [], "unprocessed": []}
        for alert in body:
            if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
                raise MeasurementError(f"{self.name}: /api/v2/alerts: an alert without labels")
            state = (alert.get("status") or {}).get("state", "active")
            by_state.setdefault(state, []).append({str(k): str(v) for k, v in alert["labels"].items()})
        return Reading(
            None,
            1,
            window,
            alerts=Alerts(
                self.name,
                firing=tuple(by_state["active"]),
                pending=tuple(by_state["unprocessed"]),
                suppressed=tuple(by_state["suppressed"]),
            ),
        )


class AlertmanagerPlugin(ProviderPlugin):
    """The ``alertmanager`` metric provider, as a plugin."""

    name = "alertmanager"
    config = AlertmanagerProvider
    open = staticmethod(AlertmanagerAlerts.from_spec)
