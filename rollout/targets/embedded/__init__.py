"""The embedded WhatsApp booking-notification service (``rollout serve``), seen from the engine.

Everything of the tool that knows the service's API or vocabulary is in this folder: its client
(:mod:`.client`), its checks (a synthetic booking, its health page: :mod:`.checks`), the error
scenarios (:mod:`.scenarios`), the booking load (:mod:`.load`), its metric provider
(:mod:`.provider`), what an incident report says of it (:mod:`.report` and ``report.md.j2``). The
engine asks for these through :class:`EmbeddedTarget`'s methods, named in
:class:`rollout.targets.base.Target`, never by their paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from rollout.checks import CheckResult
from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend
from rollout.playbook.environments import Resolved
from rollout.playbook.model import HealthStep, LoadStep, Playbook, TargetSpec
from rollout.playbook.plugins import TargetPlugin
from rollout.targets.embedded.checks import run_booking, run_health
from rollout.targets.embedded.client import EmbeddedClient, SandboxControl
from rollout.targets.embedded.load import booking_load
from rollout.targets.embedded.report import REPORT_FRAGMENT, incident_facts
from rollout.targets.embedded.scenarios import WAITS, run_scenario
from rollout.targets.embedded.steps import BookingCheck
from rollout.targets.embedded.vocabulary import HINT_TOKEN_VARIABLE, VOCABULARY
from rollout.util.clock import Clock
from rollout.util.redact import Redactor

__all__ = ["EmbeddedClient", "EmbeddedPlugin", "EmbeddedTarget", "EmbeddedTargetSpec", "SandboxControl"]


class EmbeddedTargetSpec(TargetSpec):
    """``target: {kind: embedded}`` (the default): the service shipped with rollout."""

    kind: Literal["embedded"] = "embedded"


class EmbeddedTarget:
    """The embedded WhatsApp service."""

    can_confirm = True
    #: the service decides each booking's cohort and its provider counts them: a ramp's sample ratio
    #: can be checked
    counts_cohorts = True
    #: the request that asks the service to re-read its flag now (a hint, never a value)
    hint_request = ("POST", "/api/whatsapp/flag/refresh")
    #: the environment variable that holds the token a hint is sent with (else the admin token)
    hint_token_variable = HINT_TOKEN_VARIABLE
    #: what an incident report says of the service (rendered with :meth:`incident_facts`)
    report_fragment: Path = REPORT_FRAGMENT

    def __init__(
        self, service: ServiceClient, sandbox_url: str | None = None, sandbox_token: str | None = None
    ) -> None:
        self.service = EmbeddedClient.over(service)
        self._sandbox = (sandbox_url, sandbox_token) if sandbox_url and sandbox_token else None

    def use_environment(self, resolved: Resolved) -> None:
        """Take the environment's sandbox (``sandbox_url`` and its token), for the scenarios."""
        url, token = resolved.env.sandbox_url, resolved.sandbox_token
        self._sandbox = (url, token) if url and token else None

    def on(self, service: ServiceClient) -> EmbeddedTarget:
        """The same service at another replica's ``service`` (its own report of the flag it applied)."""
        return EmbeddedTarget(service)

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        """(flag, percent, the raw answer) as the service reports them now."""
        seen = self.service.metrics(1.0)
        return seen.get("flag_enabled"), seen.get("rollout_percent"), seen

    def check(self, check: Any, clock: Clock) -> CheckResult:
        """A smoke check of the service's own (a synthetic booking)."""
        assert isinstance(check, BookingCheck)
        return run_booking(self.service, check, clock)

    def check_health(self, step: HealthStep, clock: Clock, name: str, redactor: Redactor) -> CheckResult:
        """The service's health page against ``step``'s expectation."""
        return run_health(self.service, step, clock, name, redactor)

    def load(self, step: LoadStep, clock: Clock, out: Any, label: str) -> list[CheckResult]:
        """A load step of the service's own: synthetic bookings and the notifications they send."""
        return booking_load(self.service, step, clock, out, label)

    def scenario(self, name: str, label: str, clock: Clock, within: float) -> CheckResult:
        """One of the seed plan's error scenarios, provoked through the environment's sandbox."""
        sandbox = SandboxControl(*self._sandbox) if self._sandbox else None
        try:
            return run_scenario(name, label, self.service, sandbox, clock, within)
        finally:
            if sandbox is not None:
                sandbox.close()

    def scenario_wait(self, name: str) -> str:
        """What a person waits for while scenario ``name`` runs."""
        return WAITS.get(name, "the scenario")

    def incident_facts(self, window: float, flag_variable: str) -> dict[str, Any]:
        """What the service says of the last ``window`` seconds, for :attr:`report_fragment`."""
        return incident_facts(self.service, window, flag_variable)


class EmbeddedPlugin(TargetPlugin):
    """The ``embedded`` target, as a plugin."""

    name = "embedded"
    config = EmbeddedTargetSpec
    events = "bookings"
    #: the built-in provider's metrics and the flag's defaults (:func:`rollout.playbook.builtin.vocabulary`)
    vocabulary = VOCABULARY

    @staticmethod
    def open(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> EmbeddedTarget:
        return EmbeddedTarget(service)
