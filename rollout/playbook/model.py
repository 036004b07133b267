"""The playbook's shape, validated by pydantic. Unknown keys are refused everywhere.

A playbook has named gate sets, a watch policy, and phases; a phase runs in one environment and is
an ordered list of steps, each with a ``kind``. Cross-field rules ("steps that cannot work
together") are checked in :meth:`Playbook._consistent` and report the field path they concern.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollout.units import Duration, Number
from rollout.yamlfile import FieldProblems

#: metric -> True when higher is better; the service's /api/whatsapp/metrics names
METRICS: dict[str, bool] = {
    "success_rate": True,
    "error_rate": False,
    "avg_latency_ms": False,
    "p95_latency_ms": False,
    "breaker_activations": False,
}
#: metric -> the field of the metrics answer that counts its samples
SAMPLES_OF: dict[str, str] = {
    "success_rate": "attempts",
    "error_rate": "provider_calls",
    "avg_latency_ms": "latency_samples",
    "p95_latency_ms": "latency_samples",
    "breaker_activations": "attempts",
}
NOTIFICATION_STATES = ("sent", "failed", "skipped", "pending")


class _Model(BaseModel):
    # a threshold of .nan or .inf would make a gate that can never fail: no non-finite number anywhere
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MetricGate(_Model):
    """One metric's thresholds: pass beyond ``target``, fail beyond ``alert``, hold in between."""

    metric: Literal["success_rate", "error_rate", "avg_latency_ms", "p95_latency_ms", "breaker_activations"]
    target: Number
    alert: Number
    window: Duration | None = Field(None, gt=0, description="overrides the gate's window for this metric")
    min_samples: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> MetricGate:
        higher = METRICS[self.metric]
        if higher and self.alert > self.target:
            raise ValueError(f"alert ({self.alert:g}) must not be above target ({self.target:g}) for {self.metric}")
        if not higher and self.alert < self.target:
            raise ValueError(f"alert ({self.alert:g}) must not be below target ({self.target:g}) for {self.metric}")
        if self.metric.endswith("_rate") and not (0 <= self.target <= 1 and 0 <= self.alert <= 1):
            raise ValueError(f"{self.metric} thresholds are fractions from 0 to 1 (or percentages like 95%)")
        return self


class GateSet(_Model):
    """A named set of metric gates evaluated together over a window."""

    window: Duration = Field(gt=0)
    min_samples: int = Field(20, ge=1)
    #: a rate fails only when its Wilson interval at this confidence lies wholly beyond the alert
    #: threshold (0 turns this off: the point value decides)
    confidence: float = Field(0.95, ge=0, lt=1)
    metrics: list[MetricGate] = Field(min_length=1)


class WatchPolicy(_Model):
    """What ``rollout watch`` and ramps evaluate, and how often."""

    gate: str
    interval: Duration = Field(10.0, ge=0.05)


class FlagSpec(_Model):
    variable: str = Field("WHATSAPP_NOTIFICATIONS_ENABLED", pattern=r"^[A-Z_][A-Z0-9_]*$")
    percent_variable: str = Field("WHATSAPP_ROLLOUT_PERCENT", pattern=r"^[A-Z_][A-Z0-9_]*$")


# --- steps ---------------------------------------------------------------------------------------


class _Step(_Model):
    name: str | None = Field(None, min_length=1, max_length=200)


class ConfigureStep(_Step):
    """Apply the environment's variables, with ``set`` on top, to the service's env file."""

    kind: Literal["configure"]
    set: dict[str, str] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        from rollout.environments import variable_problems

        problems = variable_problems(value)
        if problems:
            raise FieldProblems([((name,), problem) for name, problem in problems])
        return value


class JsonExpect(_Model):
    status: int | list[int] = 200
    #: dotted paths into the JSON answer and the values they must equal
    json_fields: dict[str, Any] = Field(default_factory=dict, alias="json")


class HttpCheck(_Model):
    type: Literal["http"]
    name: str
    method: Literal["GET", "POST", "PUT"] = "GET"
    path: str = Field(pattern=r"^/")
    admin: bool = False
    body: Any = None
    expect: JsonExpect = JsonExpect()
    #: retry until the expectation holds, for this long
    within: Duration = Field(0.0, ge=0, le=600)


class BookingCheck(_Model):
    """Create a test booking and wait for its WhatsApp notification to reach ``expect``."""

    type: Literal["booking"]
    name: str
    phone: str = "+919876543210"
    customer_id: str | None = None
    expect: Literal["sent", "failed", "skipped", "pending"] = "sent"
    reason: str | None = None
    within: Duration = Field(30.0, gt=0, le=600)


Check = Annotated[HttpCheck | BookingCheck, Field(discriminator="type")]


class SmokeStep(_Step):
    kind: Literal["smoke"]
    checks: list[Check] = Field(min_length=1)


class HealthStep(_Step):
    kind: Literal["health"]
    expect: list[Literal["ok", "degraded", "down"]] = ["ok"]
    flag: bool | None = None
    within: Duration = Field(10.0, ge=0, le=600)


class ScenarioStep(_Step):
    """One of the seed's error scenarios, provoked through the sandbox's fault injection."""

    kind: Literal["scenario"]
    scenario: Literal["invalid_phone", "provider_timeout", "circuit_breaker"]
    within: Duration = Field(60.0, gt=0, le=900)


class LoadExpect(_Model):
    booking_success_rate: Number = Field(0.99, ge=0, le=1)
    notification_success_rate: Number | None = Field(None, ge=0, le=1)
    p95_ms: Number | None = Field(None, gt=0)
    p99_ms: Number | None = Field(None, gt=0)


class LoadStep(_Step):
    """N bookings at a concurrency, or a rate for a duration; bounded in count and time."""

    kind: Literal["load"]
    bookings: int | None = Field(None, ge=1, le=100_000)
    concurrency: int = Field(10, ge=1, le=512)
    rate: float | None = Field(None, gt=0, le=5000)
    duration: Duration | None = Field(None, gt=0, le=600)
    expect: LoadExpect = LoadExpect()
    drain: Duration = Field(30.0, ge=0, le=600)

    @model_validator(mode="after")
    def _one_shape(self) -> LoadStep:
        by_count = self.bookings is not None
        by_rate = self.rate is not None or self.duration is not None
        if by_count == by_rate:
            raise ValueError("give either bookings (with concurrency) or rate and duration")
        if by_rate and (self.rate is None or self.duration is None):
            raise ValueError("rate and duration go together")
        if by_rate and self.rate * self.duration > 100_000:
            raise ValueError("rate x duration is over 100000 bookings")
        return self


class GateStep(_Step):
    """Observe for ``observe`` evaluating ``gate`` every interval; pass only on a pass at the end."""

    kind: Literal["gate"]
    gate: str
    observe: Duration = Field(0.0, ge=0, le=86_400)
    interval: Duration | None = Field(None, ge=0.05)
    max_hold: Duration = Field(0.0, ge=0)
    on_hold_timeout: Literal["fail", "approve"] = "fail"


class RampStep(_Step):
    """Turn the flag on for growing percentages; each is held while the gates are evaluated."""

    kind: Literal["ramp"]
    percentages: list[int] = Field(min_length=1)
    hold: Duration = Field(gt=0, le=7 * 86_400)
    gate: str
    interval: Duration | None = Field(None, ge=0.05)
    max_hold: Duration = Field(0.0, ge=0, description="how long a hold may last past `hold` before the policy")
    on_hold_timeout: Literal["fail", "approve"] = "fail"

    @field_validator("percentages")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 100 for p in value):
            raise ValueError("percentages are from 1 to 100")
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("percentages must increase (a ramp never shrinks the cohort)")
        return value


class ApproveStep(_Step):
    kind: Literal["approve"]
    message: str = "Approve to continue"


class PromoteStep(_Step):
    """Merge ``source`` into ``target`` in the project's git repository and push it."""

    kind: Literal["promote"]
    source: str
    target: str
    remote: str = "origin"
    require_evidence_from: str | None = None


Step = Annotated[
    ConfigureStep | SmokeStep | HealthStep | ScenarioStep | LoadStep | GateStep | RampStep | ApproveStep | PromoteStep,
    Field(discriminator="kind"),
]


class Phase(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    environment: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    #: ask a person before the phase changes anything (skipped with --yes)
    confirm: bool = False
    steps: list[Step] = Field(min_length=1)


class Playbook(_Model):
    version: Literal[1]
    name: str
    description: str = ""
    flag: FlagSpec = FlagSpec()
    gates: dict[str, GateSet] = Field(min_length=1)
    watch: WatchPolicy
    phases: list[Phase] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        problems: list[tuple[tuple[Any, ...], str]] = []
        if self.watch.gate not in self.gates:
            problems.append((("watch", "gate"), f"unknown gate set {self.watch.gate!r}"))
        seen_phases: set[str] = set()
        seen_envs: set[str] = set()
        for p, phase in enumerate(self.phases):
            if phase.name in seen_phases:
                problems.append((("phases", p, "name"), f"phase {phase.name!r} appears twice"))
            if phase.environment in seen_envs:
                problems.append((("phases", p, "environment"), f"environment {phase.environment!r} has two phases"))
            seen_phases.add(phase.name)
            seen_envs.add(phase.environment)
            configured = False
            for s, step in enumerate(phase.steps):
                where = ("phases", p, "steps", s)
                if isinstance(step, (GateStep, RampStep)) and step.gate not in self.gates:
                    problems.append(((*where, "gate"), f"unknown gate set {step.gate!r}"))
                if isinstance(step, ConfigureStep):
                    configured = True
                if isinstance(step, (RampStep, SmokeStep, HealthStep, ScenarioStep, LoadStep, GateStep)) \
                        and not configured:
                    problems.append((where, f"a {step.kind} step needs a configure step before it in its phase"))
                if isinstance(step, RampStep) and any(isinstance(x, RampStep) for x in phase.steps[s + 1:]):
                    problems.append((where, "only one ramp step per phase"))
            names = [step.name for step in phase.steps if step.name]
            for name in {n for n in names if names.count(n) > 1}:
                problems.append((("phases", p, "steps"), f"step name {name!r} appears twice"))
        if problems:
            raise FieldProblems(problems)
        return self

    def phase_for(self, environment: str) -> Phase | None:
        return next((p for p in self.phases if p.environment == environment), None)

    def previous_phase(self, phase: Phase) -> Phase | None:
        index = self.phases.index(phase)
        return self.phases[index - 1] if index else None


def step_label(step: Any, index: int) -> str:
    """How a step is named in output: its name, or ``kind #n``."""
    return step.name or f"{step.kind} #{index + 1}"
