"""The playbook's shape, validated by pydantic. Unknown keys are refused everywhere.

A playbook has named gate sets, a watch policy, and phases; a phase runs in one environment (or in
regions in waves, :mod:`rollout.playbook.waves`) and is an ordered list of steps, each with a ``kind``. Cross-field rules ("steps that cannot work
together") are checked in :meth:`Playbook._consistent` and report the field path they concern.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from rollout.playbook.builtin import EMBEDDED, vocabulary
from rollout.playbook.environments import variable_problems
from rollout.playbook.plugins import FLAGS, JUDGES, PROVIDERS, STEPS, TARGETS, Group, Plugin
from rollout.playbook.schedule import ScheduleKeys
from rollout.playbook.waves import WaveKeys
from rollout.util.units import Duration, DurationOrForever, Number, format_duration
from rollout.util.yamlfile import FieldProblems


class _Model(BaseModel):
    # a threshold of .nan or .inf would make a gate that can never fail: no non-finite number anywhere;
    # built on first use, when the plugin sections (rollout.playbook.plugins) resolve to their unions
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, defer_build=True)


def _reference(value: str) -> str:
    if not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value.strip()):
        raise ValueError("must be a reference like ${NAME}, never a secret in the file")
    return value.strip()


#: a secret, written as a ``${REFERENCE}`` and resolved only when used
Reference = Annotated[str, AfterValidator(_reference)]


class HttpQuery(_Model):
    """A metric read from any JSON endpoint (as Argo Rollouts' web provider does)."""

    #: a path (joined to the provider's url, else the environment's service_url) or a full URL;
    #: ``$window`` becomes the window in seconds
    url: str = Field(min_length=1)
    #: dotted path to the value in the answer
    value: str = Field(min_length=1)
    #: dotted path to the sample count (for rate: the denominator)
    samples: str | None = Field(None, min_length=1)


class CohortLabels(_Model):
    """What ``$cohort`` becomes in a compare metric's queries for each cohort."""

    treatment: str = Field("treatment", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    control: str = Field("control", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


#: what a health trigger does: ``rollback`` (the flag goes off), ``hold`` (the step does not move on;
#: its hold's limits apply), ``warn`` (recorded, notified, shown; no effect on the flag)
HealthAction = Literal["rollback", "hold", "warn"]

#: an alert's label matcher, as Prometheus and Alertmanager both write it: ``severity="page"``,
#: ``service=~"checkout|cart"``, ``env!="dev"``
_MATCHER = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"$')


def _matcher(value: str) -> str:
    if not _MATCHER.match(value) or len(value) > 500:
        raise ValueError(f'{value!r}: matchers are label matchers like severity="page" or service=~"a|b"')
    return value


if TYPE_CHECKING:
    JudgeKeys = BaseModel
else:
    #: a judge plugin's own keys of a metric: the registered judges' config models, by ``judge``
    JudgeKeys = JUDGES.field()


def _judge_names(schema: dict[str, JsonValue]) -> None:
    """The JSON Schema of ``judge``: one of the registered judges."""
    schema["enum"] = list[JsonValue](JUDGES.names())


class MetricGate(_Model):
    """One metric's thresholds: pass beyond ``target``, fail beyond ``alert``, hold in between.

    A built-in name (``success_rate``, ...) is read from the embedded service. Any other name is a
    query against a named provider, with its ``kind`` saying how it is judged: ``rate`` (``query``
    counts the events of interest, ``samples`` counts all of them; value = query / samples),
    ``latency`` (milliseconds; ``samples`` counts the observations), ``count`` or ``gauge``; or
    ``alert``: a named alert (``alertname``, ``matchers``) in Prometheus or Alertmanager, which fails
    the metric while it fires (no thresholds).
    """

    metric: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)
    provider: str = EMBEDDED
    kind: Literal["rate", "latency", "count", "gauge", "compare", "alert"] | None = None
    #: ``kind: alert``: the alert's name, and label matchers that narrow it
    alertname: str | None = Field(None, pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$", max_length=200)
    matchers: list[Annotated[str, AfterValidator(_matcher)]] = Field(default_factory=list)
    #: this metric's no-traffic action and grace (default: its gate set's)
    on_no_traffic: HealthAction | None = None
    no_traffic_grace: Duration | None = Field(None, ge=0)
    query: str | HttpQuery | None = None
    samples: str | None = Field(None, min_length=1)
    #: which way is good; by default inferred from the thresholds (alert below target: higher is better)
    higher_is_better: bool | None = None
    target: Number
    alert: Number
    window: Duration | None = Field(None, gt=0, description="overrides the gate's window for this metric")
    min_samples: int | None = Field(None, ge=0)
    #: a provider's compare metric: the label values ``$cohort`` stands for in its queries
    cohorts: CohortLabels | None = None
    #: ``guardrail``: a fail turns the flag off; ``signal``: a fail stops the step for a person and never
    #: touches the flag; ``shadow``: judged, recorded and shown, never decides
    role: Literal["guardrail", "signal", "shadow"] = "guardrail"
    #: not judged before this long into the step (a warm-up spike does not count)
    initial_delay: Duration = Field(0.0, ge=0)
    #: failing evaluations within a step before the metric fails (1: the first one, as before)
    failure_limit: int = Field(1, ge=1, le=1000)
    #: provider errors in a row before the step stops for a person (None: a provider error only holds)
    error_limit: int | None = Field(None, ge=1, le=1000)
    #: a compare metric's judge (:data:`rollout.playbook.plugins.JUDGES`): ``mean`` (the means' always-valid
    #: interval) or ``rank`` (Mann-Whitney on the cohorts' samples with a Hodges-Lehmann shift, its error
    #: spent over fixed looks)
    judge: str = Field("mean", json_schema_extra=_judge_names)
    #: a provider's rank metric: each point of its query over the window, this far apart, is one sample
    step: Duration | None = Field(None, ge=0.1, le=3600)
    #: the keys a judge plugin declares beyond the ones above, written in the metric beside ``judge:``
    #: and validated by the judge's config model (None: the judge has none; the built-in ones have none)
    judge_config: JudgeKeys | None = None

    @classmethod
    def judge_keys(cls, judge: str) -> list[str]:
        """The keys judge ``judge`` adds to a metric: those its config declares and a metric lacks."""
        return sorted(JUDGES.get(judge).config.model_fields.keys() - cls.model_fields.keys())

    @model_validator(mode="before")
    @classmethod
    def _judge_keys_apart(cls, data: Any) -> Any:
        """A judge's own keys, written in the metric, go to ``judge_config`` for its config to validate."""
        if not isinstance(data, dict) or "judge_config" in data:
            return data
        name = data.get("judge", "mean")
        if not isinstance(name, str) or name not in JUDGES.names():
            return data  # the judge field names the known ones
        own = cls.judge_keys(name)
        if not own:
            return data
        kept = {key: value for key, value in data.items() if key not in own}
        kept["judge_config"] = {"judge": name, **{key: data[key] for key in own if key in data}}
        return kept

    @model_validator(mode="after")
    def _judge_config_is_the_judges(self) -> MetricGate:
        """``judge_config`` written as such (a dumped metric validated again keeps it) holds the keys of
        this metric's judge, or nothing when that judge adds none: a judge never reads another's keys,
        nor finds its own missing when it judges."""
        own = self.judge_keys(self.judge)
        held = None if self.judge_config is None else getattr(self.judge_config, JUDGES.tag, None)
        if held != (self.judge if own else None):
            takes = f"takes {', '.join(own)} beside judge:" if own else "adds no keys"
            raise ValueError(f"judge_config holds {f'judge {held}' if held else 'no'} keys; judge {self.judge} {takes}")
        return self

    @field_validator("judge")
    @classmethod
    def _known_judge(cls, value: str) -> str:
        if value not in JUDGES.names():
            raise ValueError(f"unknown judge {value!r} (known: {', '.join(JUDGES.names())})")
        return value

    @property
    def per_sample(self) -> bool:
        """Is it a compare metric whose judge reads every sample of each cohort (``judge: rank``), so a
        provider reads one sample per point rather than each cohort's aggregate?"""
        return self.kind == "compare" and JUDGES.get(self.judge).per_sample

    @model_validator(mode="before")
    @classmethod
    def _alert_has_no_thresholds(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "alert":
            implied = {"target": 0, "alert": 1, "query": None, "samples": None, "cohorts": None}
            given = [k for k, v in implied.items() if k in data and data[k] != v]
            if given:
                raise ValueError(
                    f"an alert metric takes no {', '.join(given)}: it fails while its alert fires "
                    "(name it with alertname and matchers)"
                )
            return {**data, "target": 0, "alert": 1}
        return data

    def describe(self) -> str:
        """The metric and how it decides, for ``validate`` and ``plan``: ``error_rate (signal, failure_limit 3)``."""
        said: list[str] = [self.role]
        if self.kind == "alert":
            said.insert(0, f"alert {self.alertname}" + (f"{{{', '.join(self.matchers)}}}" if self.matchers else ""))
        if self.on_no_traffic is not None:
            said.append(f"on_no_traffic {self.on_no_traffic}")
        if self.failure_limit != 1:
            said.append(f"failure_limit {self.failure_limit}")
        if self.error_limit is not None:
            said.append(f"error_limit {self.error_limit}")
        if self.initial_delay:
            said.append(f"initial_delay {format_duration(self.initial_delay)}")
        if self.judge != "mean":
            keys = self.judge_config.model_dump(exclude={"judge"}) if self.judge_config is not None else {}
            said.append(" ".join([f"{self.judge} judge", *(f"{key} {value}" for key, value in keys.items())]))
        return f"{self.metric} ({', '.join(said)})"

    @property
    def unit(self) -> str:
        """``rate``, ``latency``, ``count`` or ``gauge`` (for ``compare``: the compared metric's; a
        provider's compare metric is a rate)."""
        if self.kind == "compare":
            if self.provider != EMBEDDED:
                return "latency" if self.per_sample else "rate"
            return vocabulary().compare_metrics[self.metric]["unit"]
        return self.kind or vocabulary().kinds.get(self.metric, "gauge")

    @property
    def percentile(self) -> int | None:
        """The percentile this metric is (95 for a p95), as its provider declares it; None for any
        other metric. Its evidence is the count of calls slower than its alert."""
        return vocabulary().percentiles.get(self.metric) if self.provider == EMBEDDED else None

    @property
    def higher(self) -> bool:
        """Is a higher value better? (A compare metric is a difference: treatment worse is higher.)"""
        if self.kind == "compare":
            return False
        if self.provider == EMBEDDED and self.metric in vocabulary().metrics:
            return vocabulary().metrics[self.metric]
        if self.higher_is_better is not None:
            return self.higher_is_better
        return self.alert < self.target

    @model_validator(mode="after")
    def _ordered(self) -> MetricGate:
        if self.kind == "alert":
            if self.provider == EMBEDDED:
                raise FieldProblems([(("provider",), "an alert is read from a prometheus or alertmanager provider")])
            if self.alertname is None:
                raise FieldProblems([(("alertname",), "required for kind: alert (the alert's name)")])
            if self.judge == "rank":
                raise FieldProblems([(("judge",), "rank judges latencies, not alerts")])
            return self
        if self.alertname is not None or self.matchers:
            raise FieldProblems([(("alertname" if self.alertname else "matchers",), "only for kind: alert")])
        if (
            self.kind == "compare"
            or self.cohorts is not None
            or (self.provider == EMBEDDED and self.metric in vocabulary().compare_metrics)
        ):
            return self._compare()
        if self.provider == EMBEDDED:
            if self.metric not in vocabulary().metrics:
                raise FieldProblems(
                    [
                        (
                            ("metric",),
                            f"{self.metric!r} is not a built-in metric of the embedded service "
                            f"({', '.join(vocabulary().metrics)}); name a provider and a query for your own",
                        )
                    ]
                )
            if self.query is not None or self.samples is not None or self.kind is not None:
                raise ValueError("a built-in metric takes no query, samples or kind; name a provider for your own")
        else:
            if self.kind is None:
                raise FieldProblems([(("kind",), "required for a provider's metric: rate, latency, count or gauge")])
            if self.query is None:
                raise FieldProblems([(("query",), "required for a provider's metric")])
            if self.higher_is_better is None and self.alert == self.target:
                raise ValueError("target equals alert: say which way is good with higher_is_better")
        if self.judge == "rank":
            raise FieldProblems([(("judge",), "rank judges treatment against control: a kind: compare latency metric")])
        higher = self.higher
        if higher and self.alert > self.target:
            raise ValueError(f"alert ({self.alert:g}) must not be above target ({self.target:g}) for {self.metric}")
        if not higher and self.alert < self.target:
            raise ValueError(f"alert ({self.alert:g}) must not be below target ({self.target:g}) for {self.metric}")
        if self.unit == "rate" and not (0 <= self.target <= 1 and 0 <= self.alert <= 1):
            raise ValueError(f"{self.metric} thresholds are fractions from 0 to 1 (or percentages like 95%)")
        return self

    def _compare(self) -> MetricGate:
        if self.provider != EMBEDDED:
            return self._provider_compare()
        if self.cohorts is not None:
            raise ValueError(
                "cohorts names the label values of a provider's queries; the embedded service knows its own"
            )
        if self.metric not in vocabulary().compare_metrics:
            raise FieldProblems(
                [
                    (
                        ("metric",),
                        f"{self.metric!r} cannot be compared; kind: compare takes {', '.join(vocabulary().compare_metrics)}",
                    )
                ]
            )
        if self.kind != "compare":
            raise FieldProblems(
                [
                    (
                        ("kind",),
                        f"{self.metric} is judged treatment against control: write kind: compare "
                        "(target and alert are the differences allowed)",
                    )
                ]
            )
        if self.query is not None or self.samples is not None:
            raise ValueError("a compare metric takes no query or samples")
        if self.judge == "rank" and self.unit != "latency":
            raise FieldProblems([(("judge",), f"rank judges latencies; {self.metric} is a rate")])
        if self.alert < self.target:
            raise ValueError(
                f"alert ({self.alert:g}) must not be below target ({self.target:g}) for {self.metric}: "
                "both are how much worse than control the treatment may be"
            )
        if self.unit == "rate" and not (-1 <= self.target <= 1 and -1 <= self.alert <= 1):
            raise ValueError(f"{self.metric} margins are fractions (or percentages like 1%)")
        return self

    def _provider_compare(self) -> MetricGate:
        """A rate per cohort from a provider: ``query`` counts the events of interest and ``samples``
        all events, each with ``$cohort`` where the cohort's label value goes. With ``judge: rank``,
        a latency per cohort: ``query`` (with ``$cohort``) over the window, one sample per ``step``."""
        problems = []
        if self.kind != "compare":
            problems.append(
                (("kind",), "a metric with cohorts is judged treatment against control: write kind: compare")
            )
        for field in ("query",) if self.per_sample else ("query", "samples"):
            text = getattr(self, field)
            if not isinstance(text, str) or "$cohort" not in text:
                problems.append(
                    (
                        (field,),
                        "a provider's compare metric needs a PromQL query with $cohort in it "
                        "(treatment and control are read by the same query)",
                    )
                )
        if problems:
            raise FieldProblems(problems)
        if self.alert < self.target:
            raise ValueError(
                f"alert ({self.alert:g}) must not be below target ({self.target:g}) for {self.metric}: "
                "both are how much worse than control the treatment may be"
            )
        if self.judge != "rank" and not (-1 <= self.target <= 1 and -1 <= self.alert <= 1):
            raise ValueError(f"{self.metric} margins are fractions (or percentages like 1%)")
        return self


class ProviderSpec(_Model):
    """What every metric provider's config has (a provider plugin's ``config`` subclasses it, with
    ``kind: Literal[NAME]``): where it is (``url``), a bearer ``token`` as a reference
    (``${PROMETHEUS_TOKEN}``, resolved when used), and how long one query may take. The built-ins
    (:data:`rollout.playbook.plugins.PROVIDERS`): ``prometheus``, ``http``, ``alertmanager``."""

    kind: str
    url: str | None = Field(None, pattern=r"^https?://")
    token: Reference | None = None
    timeout: Duration = Field(5.0, gt=0, le=60)


if TYPE_CHECKING:
    Provider = ProviderSpec
else:
    #: a named provider: the registered providers' config models, by ``kind``
    Provider = PROVIDERS.field()


class GateSet(_Model):
    """A named set of metric gates evaluated together over a window."""

    window: Duration = Field(gt=0)
    min_samples: int = Field(20, ge=1)
    #: a rate fails only when its interval at this confidence lies wholly beyond the alert threshold
    #: (0 turns this off: the point value decides); with the sequential test, 1 - confidence bounds
    #: the chance that a healthy step is ever rolled back, however often it is evaluated
    confidence: float = Field(0.99, ge=0, lt=1)
    #: ``sequential``: an always-valid confidence sequence; ``wilson``: a fixed-sample interval
    test: Literal["sequential", "wilson"] = "sequential"
    #: ``estimate``: a metric passes when its value is beyond the target (with ``min_samples``);
    #: ``interval``: only when its always-valid interval at ``confidence`` lies wholly beyond it
    #: (rates, mean latencies and compare metrics; others keep the estimate)
    pass_when: Literal["estimate", "interval"] = "estimate"
    #: ``bonferroni``: the guardrails are a family: ``1 - confidence`` is split evenly across them, so
    #: the chance that *any* of k healthy guardrails rolls a step back stays within ``1 - confidence``;
    #: ``none`` (today's): each guardrail is judged at ``confidence`` alone (k chances)
    correction: Literal["none", "bonferroni"] = "none"
    #: health actions (rollback, hold, warn); the defaults are what every gate set did before them:
    #: a guardrail breach fails (the flag goes off), a sample-ratio mismatch fails, no traffic holds
    on_guardrail: HealthAction = "rollback"
    on_srm: HealthAction = "rollback"
    on_no_traffic: HealthAction = "hold"
    #: how long into a step a metric may see no traffic at all before ``on_no_traffic`` applies
    no_traffic_grace: Duration = Field(300.0, ge=0)
    metrics: list[MetricGate] = Field(min_length=1)

    def no_traffic(self, metric: MetricGate) -> tuple[str, float]:
        """``metric``'s no-traffic action and grace: its own, else the gate set's."""
        return (
            metric.on_no_traffic or self.on_no_traffic,
            self.no_traffic_grace if metric.no_traffic_grace is None else metric.no_traffic_grace,
        )

    def metric_confidence(self, metric: MetricGate) -> float:
        """The confidence ``metric`` is judged at: the gate's, or its guardrail family's share."""
        guardrails = sum(1 for m in self.metrics if m.role == "guardrail")
        if self.correction == "none" or metric.role != "guardrail" or guardrails <= 1 or self.confidence <= 0:
            return self.confidence
        return 1.0 - (1.0 - self.confidence) / guardrails

    @model_validator(mode="after")
    def _someone_decides(self) -> GateSet:
        if all(m.role == "shadow" for m in self.metrics):
            raise FieldProblems(
                [(("metrics",), "every metric is a shadow: at least one must decide (guardrail or signal)")]
            )
        return self


#: how often gates are evaluated when neither the step nor a watch policy says
DEFAULT_INTERVAL_S = 10.0


class WatchPolicy(_Model):
    """What ``rollout watch`` and ramps evaluate, and how often."""

    gate: str
    interval: Duration = Field(DEFAULT_INTERVAL_S, ge=0.05)


class FlagRead(_Model):
    """Where the target says what it applied: a GET and the JSON field paths of the flag and the
    percentage (``percent`` may be omitted when the target has no percentage)."""

    url: str = Field(min_length=1)
    enabled: str = Field(min_length=1)
    percent: str | None = Field(None, min_length=1)


class FlagSpec(_Model):
    """Where the flag lives and how it is written: what every flag backend's config has (a flag
    backend plugin's ``config`` subclasses it, with ``backend: Literal[NAME] = NAME``).

    ``variable`` and ``percent_variable`` are the names configure steps and reports use for the flag
    and its percentage; ``timeout`` bounds one write; ``read`` is how the written state is read back
    from the target (a GET and the JSON field paths). Each backend's own keys are on its config model
    (:data:`rollout.playbook.plugins.FLAGS`): ``envfile`` (the default), ``http``, ``command``,
    ``postgres``, ``unleash``.
    """

    backend: str
    variable: str = Field(
        default_factory=lambda: vocabulary().flag_variable,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        json_schema_extra=lambda schema: schema.update(default=vocabulary().flag_variable),
    )
    percent_variable: str = Field(
        default_factory=lambda: vocabulary().percent_variable,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        json_schema_extra=lambda schema: schema.update(default=vocabulary().percent_variable),
    )
    timeout: Duration = Field(5.0, gt=0, le=60)
    read: FlagRead | None = None

    # ``FlagSpec(backend="unleash", url=...)`` and ``FlagSpec.model_validate({...})``, as before the
    # backends had models of their own, build the named backend's config
    def __new__(cls, *args: Any, **keys: Any) -> FlagSpec:
        if cls is FlagSpec:
            cls = FLAGS.get(keys.get("backend") or FLAGS.default or "").config  # type: ignore[assignment]
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **keys: Any) -> Any:
        """``obj`` as this model; on :class:`FlagSpec` itself, as the config of the backend it names."""
        if cls is FlagSpec and isinstance(obj, dict):
            return FLAGS.get(obj.get("backend") or FLAGS.default or "").config.model_validate(obj, *args, **keys)
        return super().model_validate(obj, *args, **keys)


if TYPE_CHECKING:
    FlagConfig = FlagSpec
else:
    #: ``flag:``: the registered flag backends' config models, by ``backend`` (absent: ``envfile``)
    FlagConfig = FLAGS.field()


# --- steps ---------------------------------------------------------------------------------------


class StepConfig(_Model):
    """What every step's config model is (a step kind plugin's ``config`` subclasses it): its ``kind``
    (a ``Literal`` of the kind's name in the subclass) and an optional ``name``."""

    kind: str
    name: str | None = Field(None, min_length=1, max_length=200)


class ConfigureStep(StepConfig):
    """Apply the environment's variables, with ``set`` on top, to the service's env file."""

    kind: Literal["configure"]
    set: dict[str, str] = Field(default_factory=dict)

    @field_validator("set")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        problems = variable_problems(value)
        if problems:
            raise FieldProblems([((name,), problem) for name, problem in problems])
        return value


class JsonExpect(_Model):
    status: int | list[int] = 200
    #: dotted paths into the JSON answer and the values they must equal
    json_fields: dict[str, Any] = Field(default_factory=dict, alias="json")


class HttpCheck(_Model):
    """One HTTP request and what its answer must be. ``path`` is joined to the environment's
    ``service_url``; ``url`` is a full URL (another service, a gateway). Header values may hold
    ``${SECRET}`` references: resolved when sent, redacted everywhere."""

    type: Literal["http"]
    name: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
    path: str | None = Field(None, pattern=r"^/")
    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    admin: bool = False
    body: Any = None
    expect: JsonExpect = JsonExpect()
    #: retry until the expectation holds, for this long
    within: Duration = Field(0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _one_place(self) -> HttpCheck:
        if (self.path is None) == (self.url is None):
            raise ValueError("give either path (on the service) or url (anywhere)")
        return self


class HttpCheckType(Plugin):
    """The ``http`` check: one request and what its answer must be."""

    name = "http"
    config = HttpCheck


#: a smoke step's check types, by ``type``: ``http`` here, ``booking`` the embedded target's (a target's
#: own check is its own model in its folder, one line here, or an entry point of group ``rollout.checks``)
CHECKS: Group[Plugin] = Group(
    "checks",
    "type",
    {"http": "rollout.playbook.model:HttpCheckType", "booking": "rollout.targets.embedded.steps:BookingCheckType"},
)

if TYPE_CHECKING:
    Check = HttpCheck | Any
else:
    #: a smoke step's check: the registered check types' models, by ``type``
    Check = CHECKS.field()


class SmokeStep(StepConfig):
    kind: Literal["smoke"]
    checks: list[Check] = Field(min_length=1)


class HealthStep(StepConfig):
    kind: Literal["health"]
    expect: list[Literal["ok", "degraded", "down"]] = ["ok"]
    flag: bool | None = None
    within: Duration = Field(10.0, ge=0, le=600)


class LoadExpect(_Model):
    """What a load step must see. ``success_rate`` was ``booking_success_rate`` (still accepted)."""

    success_rate: Number = Field(
        0.99, ge=0, le=1, validation_alias=AliasChoices("success_rate", "booking_success_rate")
    )
    notification_success_rate: Number | None = Field(None, ge=0, le=1)
    p95_ms: Number | None = Field(None, gt=0)
    p99_ms: Number | None = Field(None, gt=0)


class LoadRequest(_Model):
    """The request of a generic load (any HTTP service); ``$i`` in the URL or the body's strings
    becomes the request's number."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str | None = Field(None, pattern=r"^/")
    url: str | None = Field(None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    #: the statuses that count as a success
    ok_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204], min_length=1)

    @model_validator(mode="after")
    def _one_place(self) -> LoadRequest:
        if (self.path is None) == (self.url is None):
            raise ValueError("give either path (on the service) or url (anywhere)")
        return self


class LoadStep(StepConfig):
    """N requests at a concurrency, or a rate for a duration; bounded in count and time. Bookings
    against the embedded service by default; any HTTP request with ``request``."""

    kind: Literal["load"]
    request: LoadRequest | None = None
    #: how many (bookings against the embedded service, else requests); ``bookings`` is still accepted
    requests: int | None = Field(None, ge=1, le=100_000, validation_alias=AliasChoices("requests", "bookings"))
    concurrency: int = Field(10, ge=1, le=512)
    rate: float | None = Field(None, gt=0, le=5000)
    duration: Duration | None = Field(None, gt=0, le=600)
    expect: LoadExpect = LoadExpect()
    drain: Duration = Field(30.0, ge=0, le=600)

    @model_validator(mode="after")
    def _one_shape(self) -> LoadStep:
        by_count = self.requests is not None
        by_rate = self.rate is not None or self.duration is not None
        if by_count == by_rate:
            raise ValueError("give either requests (bookings; with concurrency) or rate and duration")
        if by_rate and (self.rate is None or self.duration is None):
            raise ValueError("rate and duration go together")
        if self.rate is not None and self.duration is not None and self.rate * self.duration > 100_000:
            raise ValueError("rate x duration is over 100000 requests")
        if self.request is not None and self.expect.notification_success_rate is not None:
            raise ValueError("notification_success_rate is about bookings; a generic request load has none")
        return self


class GateStep(StepConfig):
    """Observe for ``observe`` evaluating ``gate`` every interval; pass only on a pass at the end."""

    kind: Literal["gate"]
    gate: str
    observe: Duration = Field(0.0, ge=0, le=86_400)
    interval: Duration | None = Field(None, ge=0.05)
    max_hold: Duration = Field(0.0, ge=0)
    on_hold_timeout: Literal["fail", "approve"] = "fail"


class RampStep(StepConfig):
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
        if any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError("percentages must increase (a ramp never shrinks the cohort)")
        return value


class ApproveStep(StepConfig):
    kind: Literal["approve"]
    message: str = "Approve to continue"


class PromoteStep(StepConfig):
    """Merge ``source`` into ``target`` in the project's git repository and push it."""

    kind: Literal["promote"]
    source: str
    target: str
    remote: str = "origin"
    require_evidence_from: str | None = None


if TYPE_CHECKING:
    Step = StepConfig
else:
    #: a step: the registered step kinds' models, by ``kind`` (:data:`rollout.playbook.plugins.STEPS`)
    Step = STEPS.field()


class HealthProbe(_Model):
    url: str = Field(min_length=1)
    expect: JsonExpect = JsonExpect()


class TargetSpec(_Model):
    """What is being rolled out: what every target's config has (a target plugin's ``config``
    subclasses it, with ``kind: Literal[NAME]``). ``embedded`` (the default) is the service shipped
    with rollout; ``http`` is any service (:data:`rollout.playbook.plugins.TARGETS`). ``health`` is its
    health probe and ``flag_state`` where it reports the flag it applied (without it, the flag
    backend's ``read``)."""

    kind: str
    health: HealthProbe | None = None
    flag_state: FlagRead | None = None


if TYPE_CHECKING:
    TargetConfig = TargetSpec
else:
    #: ``target:``: the registered targets' config models, by ``kind`` (absent: ``embedded``)
    TargetConfig = TARGETS.field()


#: what a webhook can be told of
NotifyEvent = Literal[
    "flag_off", "hold_timeout", "approval_needed", "phase_completed", "rollout_completed", "health_warning"
]


class NotifyHook(_Model):
    """A webhook: JSON (with a Slack-compatible ``text``) POSTed on the events it lists."""

    name: str = Field("webhook", min_length=1, max_length=100)
    url: str = Field(pattern=r"^https?://")
    token: Reference | None = None
    events: list[NotifyEvent] = Field(default_factory=lambda: list(get_args(NotifyEvent)), min_length=1)
    timeout: Duration = Field(5.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=5)


class Phase(_Model, ScheduleKeys, WaveKeys):
    """A phase: its steps in one environment, or in several regions in ``waves``
    (:mod:`rollout.playbook.waves`); ``windows``, ``freeze``, ``start_at`` and ``cutoff``
    (:mod:`rollout.playbook.schedule`) say when its ramp may move up."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    #: the one environment the phase runs in (None: it names ``waves`` of regions instead)
    environment: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    #: ask a person before the phase changes anything (skipped with --yes)
    confirm: bool = False
    #: after the phase completes, the always-on agent keeps evaluating the playbook's watch gate this
    #: long (``forever``: until a rollback) and turns the flag off on a fail; None: nothing watches
    bake: DurationOrForever | None = Field(None, gt=0)
    #: before its first step, run every gate query once and stop (no flag write) if one cannot work
    preflight: bool = False
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_place(self) -> Phase:
        if (self.environment is None) == (self.waves is None):
            raise FieldProblems(
                [
                    (
                        ("environment",) if self.environment is not None else (),
                        "give environment (one) or waves (regions in waves), not both"
                        if self.environment is not None
                        else "required: environment (where the phase runs) or waves (regions in waves)",
                    )
                ]
            )
        if self.waves is not None and not any(isinstance(step, RampStep) for step in self.steps):
            raise FieldProblems([(("steps",), "a phase with waves needs a ramp step (the waves order its writes)")])
        return self

    @property
    def environments(self) -> list[str]:
        """Where the phase runs: its environment, or every region wave by wave."""
        return [self.environment] if self.environment is not None else self.regions

    @property
    def waved(self) -> bool:
        """Does the phase run in regions in waves?"""
        return self.waves is not None


class Playbook(_Model):
    version: Literal[1]
    name: str
    description: str = ""
    flag: FlagConfig = Field(default_factory=FLAGS.default_config)
    #: what is rolled out (default: the embedded service)
    target: TargetConfig = Field(default_factory=TARGETS.default_config)
    #: where gate metrics come from, by name; ``embedded`` (the service's own endpoint) always exists
    providers: dict[str, Provider] = Field(default_factory=dict)
    gates: dict[str, GateSet] = Field(min_length=1)
    #: what ``rollout watch`` evaluates, and the default interval of ramps and gate steps; optional
    #: (without it ramps and gates evaluate every 10 s unless they say otherwise, and ``rollout watch`` refuses)
    watch: WatchPolicy | None = None
    #: webhooks told of flag-offs, hold timeouts, approvals needed and completions
    notify: list[NotifyHook] = Field(default_factory=list)
    phases: list[Phase] = Field(min_length=1)

    @property
    def interval(self) -> float:
        """How often ramps and gate steps evaluate when they do not say: the watch policy's interval."""
        return self.watch.interval if self.watch is not None else DEFAULT_INTERVAL_S

    def warnings(self) -> list[str]:
        """What is valid but will not work as a person expects, for ``validate`` to say."""
        found = []
        if (  # an http target confirms a flag only through HTTP; a postgres fleet confirms through its replicas
            self.flag.backend != "postgres"
            and self.target.kind == "http"
            and self.flag.read is None
            and self.target.flag_state is None
        ):
            found.append(
                f"flag: the {self.flag.backend} backend has neither flag.read nor target.flag_state, so "
                "rollout cannot see the service apply the flag: every flag-off will be reported NOT "
                "confirmed (rollback exits 1); add one of them"
            )
        for p, phase in enumerate(self.phases):
            if phase.waves is None or phase.max_exposure is None:
                continue
            ramp = next(step for step in phase.steps if isinstance(step, RampStep))
            total = sum(phase.weight(r) for r in phase.regions)
            first = sum(phase.weight(r) for r in phase.waves[0].environments) / total * ramp.percentages[-1] / 100
            if first > phase.max_exposure:
                found.append(
                    f"phases.{p}.max_exposure: wave 1 alone exposes {first * 100:.3g}% of the customers at "
                    f"{ramp.percentages[-1]}%, over max_exposure {phase.max_exposure * 100:.3g}%: the budget holds "
                    "back the writes of later waves while earlier ones are unproven, never the first wave's"
                )
        return found

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        problems: list[tuple[tuple[Any, ...], str]] = []
        if self.watch is not None and self.watch.gate not in self.gates:
            problems.append((("watch", "gate"), f"unknown gate set {self.watch.gate!r}"))
        if self.target.kind == "http":
            if self.target.health is None:
                problems.append((("target", "health"), "an http target needs a health probe {url, expect}"))
            for gate_name, gate in self.gates.items():
                for m, spec in enumerate(gate.metrics):
                    if spec.provider == EMBEDDED:
                        problems.append(
                            (
                                ("gates", gate_name, "metrics", m, "provider"),
                                f"{spec.metric} is read from the embedded service; an http target needs a "
                                "provider (prometheus or http)",
                            )
                        )
            for p, phase in enumerate(self.phases):
                for s, step in enumerate(phase.steps):
                    if (
                        getattr(step, "embedded_only", False)
                        or (isinstance(step, LoadStep) and step.request is None)
                        or (
                            isinstance(step, SmokeStep) and any(getattr(c, "embedded_only", False) for c in step.checks)
                        )
                    ):
                        problems.append(
                            (
                                ("phases", p, "steps", s),
                                f"a {step.kind} step of this kind speaks the "
                                "booking API of the embedded service; an http target cannot run it",
                            )
                        )
        if EMBEDDED in self.providers:
            problems.append((("providers", EMBEDDED), "the name 'embedded' is the built-in provider; choose another"))
        for gate_name, gate in self.gates.items():
            for m, spec in enumerate(gate.metrics):
                where: tuple[Any, ...] = ("gates", gate_name, "metrics", m)
                if spec.provider == EMBEDDED:
                    continue
                provider = self.providers.get(spec.provider)
                if provider is None:
                    known = ", ".join([EMBEDDED, *self.providers])
                    problems.append(((*where, "provider"), f"unknown provider {spec.provider!r} (known: {known})"))
                elif spec.kind == "alert" or provider.kind == "alertmanager":
                    if spec.kind != "alert":
                        problems.append(((*where, "kind"), "an alertmanager provider serves only kind: alert metrics"))
                    elif provider.kind == "http":
                        problems.append(
                            ((*where, "provider"), "an alert is read from a prometheus or alertmanager provider")
                        )
                elif provider.kind == "prometheus":
                    if not isinstance(spec.query, str) or not spec.query.strip():
                        problems.append(((*where, "query"), "a prometheus metric's query is a PromQL string"))
                    # a rank judge counts the points of its one query: it has no samples query
                    if spec.unit in ("rate", "latency") and not spec.samples and not spec.per_sample:
                        problems.append(
                            (
                                (*where, "samples"),
                                f"a {spec.unit} needs a samples query (PromQL that counts the observations)",
                            )
                        )
                elif spec.kind == "compare":
                    problems.append(
                        (
                            (*where, "provider"),
                            "compare reads a prometheus provider (a query per cohort) "
                            "or the embedded service; an http provider has no cohorts",
                        )
                    )
                elif provider.kind == "http":
                    if not isinstance(spec.query, HttpQuery):
                        problems.append(
                            (
                                (*where, "query"),
                                "an http metric's query is {url: ..., value: field.path, samples: field.path}",
                            )
                        )
                    elif spec.unit in ("rate", "latency") and not spec.query.samples:
                        problems.append(((*where, "query", "samples"), f"a {spec.unit} needs a samples field path"))
                    if spec.samples is not None:
                        problems.append(((*where, "samples"), "an http metric names its samples in query.samples"))
                counted = spec.samples or (spec.query.samples if isinstance(spec.query, HttpQuery) else None)
                needed = gate.min_samples if spec.min_samples is None else spec.min_samples
                if provider is not None and spec.kind in ("count", "gauge") and not counted and needed > 1:
                    # one reading is one sample: it could never pass (and plan's traffic hint would be false)
                    problems.append(
                        (
                            (*where, "samples"),
                            f"a {spec.kind} without samples counts as 1 sample, so "
                            f"{spec.metric} could never reach the {needed} samples needed and never pass; "
                            "add a samples query or min_samples: 1 on the metric",
                        )
                    )
        seen_phases: set[str] = set()
        seen_envs: set[str] = set()
        for p, phase in enumerate(self.phases):
            if phase.name in seen_phases:
                problems.append((("phases", p, "name"), f"phase {phase.name!r} appears twice"))
            for env in phase.environments:
                if env in seen_envs:
                    where = ("environment",) if phase.environment is not None else _region_path(phase, env)
                    problems.append((("phases", p, *where), f"environment {env!r} has two phases"))
                seen_envs.add(env)
            seen_phases.add(phase.name)
            if phase.bake is not None and self.watch is None:
                problems.append(
                    (
                        ("phases", p, "bake"),
                        "a bake evaluates the playbook's watch gate: add watch: {gate: NAME, interval: 1m}",
                    )
                )
            configured = False
            for s, step in enumerate(phase.steps):
                where = ("phases", p, "steps", s)
                if isinstance(step, (GateStep, RampStep)) and step.gate not in self.gates:
                    problems.append(((*where, "gate"), f"unknown gate set {step.gate!r}"))
                if isinstance(step, ConfigureStep):
                    configured = True
                if (
                    isinstance(step, (RampStep, SmokeStep, HealthStep, LoadStep, GateStep))
                    or getattr(step, "needs_configure", False)
                ) and not configured:
                    problems.append((where, f"a {step.kind} step needs a configure step before it in its phase"))
                if isinstance(step, RampStep) and any(isinstance(x, RampStep) for x in phase.steps[s + 1 :]):
                    problems.append((where, "only one ramp step per phase"))
            names = [step.name for step in phase.steps if step.name]
            for name in {n for n in names if names.count(n) > 1}:
                problems.append((("phases", p, "steps"), f"step name {name!r} appears twice"))
        if problems:
            raise FieldProblems(problems)
        return self

    def phase_for(self, environment: str) -> Phase | None:
        """The phase that runs in ``environment`` (its one environment, or one of its regions)."""
        return next((p for p in self.phases if environment in p.environments), None)

    def previous_phase(self, phase: Phase) -> Phase | None:
        index = self.phases.index(phase)
        return self.phases[index - 1] if index else None


def _region_path(phase: Phase, region: str) -> tuple[Any, ...]:
    """Where ``region`` is written in ``phase``: ``waves.W.environments.R``."""
    wave = phase.wave_of(region)
    return ("waves", wave, "environments", phase.waves[wave].environments.index(region)) if phase.waves else ()


def step_label(step: Any, index: int) -> str:
    """How a step is named in output: its name, or ``kind #n``."""
    return step.name or f"{step.kind} #{index + 1}"
