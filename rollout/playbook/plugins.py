"""One plugin shape for everything a playbook names by kind: flag backends, metric providers,
targets, step kinds and compare judges.

A plugin is a class that carries its own pydantic config model (:class:`Plugin`: ``name`` and
``config``; the config model forbids unknown keys and has a ``Literal`` field, its *tag*, that holds
the name: ``backend: unleash``, ``kind: ramp``). Each :class:`Group` finds its plugins in two places,
as pytest finds its ``pytest11`` plugins:

- this package's built-ins: ``"module:attr"`` strings, imported only when first asked for, so the
  playbook floor names the higher floors' classes without importing them (and a checkout runs without
  an install);
- installed packages: the entry points of group ``rollout.<group>`` (the group's name after
  ``rollout.``: flags, providers, targets, steps, judges), each ``name = "module:Class"``.

:meth:`Group.field` is the type the playbook model gives a section (``flag:``, a provider, ``target:``, a
step): on first validation it becomes the discriminated union of every registered config model, so a new
backend is one file and one line here (or one entry point), never an edit of ``model.py``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args

from pydantic import BaseModel, Discriminator, GetCoreSchemaHandler, Tag
from pydantic_core import CoreSchema

from rollout.util.errors import PlaybookError

if TYPE_CHECKING:  # the floors above, named for the type checker only (a plugin may live on any floor)
    from rollout.checks.client import ServiceClient
    from rollout.engine.context import RunContext
    from rollout.engine.steps.base import StepResult, Wait
    from rollout.flags.base import FlagBackend
    from rollout.gates.results import MetricResult, Reading
    from rollout.gates.verdict import StepCounts
    from rollout.playbook.environments import Environment
    from rollout.playbook.model import GateSet, MetricGate, Playbook
    from rollout.providers.base import Provider
    from rollout.targets.base import Target


class Plugin:
    """What every plugin is: its ``name`` (the value of its tag in the playbook) and ``config``, the
    pydantic model of its section (``extra="forbid"``, its tag a ``Literal[name]``). A group's plugins
    add what that group needs (a flag backend: ``open``; a step kind: ``run`` and ``describe``)."""

    name: ClassVar[str]
    config: ClassVar[type[BaseModel]]


class FlagPlugin(Plugin):
    """A flag backend (group ``rollout.flags``; its config's tag is ``backend``)."""

    @classmethod
    def open(cls, spec: Any, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> FlagBackend:
        """The backend for one environment; ``secret`` resolves a ``${REFERENCE}`` (and teaches the
        redactor its value); ``state_dir`` is where a backend may keep files (its lock, a record)."""
        raise NotImplementedError


class ProviderPlugin(Plugin):
    """A metric provider (group ``rollout.providers``; tag ``kind``)."""

    @staticmethod
    def open(spec: Any, name: str, service_url: str, secret: Callable[[str], str]) -> Provider:
        """The provider called ``name`` in the playbook; ``service_url`` is the environment's service."""
        raise NotImplementedError


class TargetPlugin(Plugin):
    """What is rolled out (group ``rollout.targets``; tag ``kind``)."""

    #: what one event of the target's traffic is called in plan lines and verdicts (``requests/s``)
    events: ClassVar[str] = "requests"

    @staticmethod
    def open(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> Target:
        """The target of one environment's ``service``, whose flag ``flags`` writes."""
        raise NotImplementedError


class StepKind(Plugin):
    """A step kind (entry point group: steps after ``rollout.``; tag ``kind``): :meth:`run` and :meth:`describe`; a kind
    that observes over time also has ``tick`` (one look: a result, or when to look again)."""

    #: one look of an observing kind (None: :meth:`run` runs to its end)
    tick: ClassVar[Any] = None

    @staticmethod
    def run(ctx: RunContext, step: Any, label: str) -> StepResult:
        """Run the step to its end."""
        raise NotImplementedError

    @staticmethod
    def describe(step: Any, playbook: Playbook | None = None) -> str:
        """One line on what the step does, for ``plan`` and ``validate``."""
        raise NotImplementedError

    @classmethod
    def step(cls, ctx: RunContext, step: Any, label: str) -> StepResult | Wait:
        """One look at ``step`` (a kind without ``tick`` runs to its end)."""
        return cls.tick(ctx, step, label) if cls.tick is not None else cls.run(ctx, step, label)


class JudgePlugin(Plugin):
    """How a ``kind: compare`` metric judges treatment against control (entry point group: judges after
    ``rollout.``; the metric's ``judge:`` names it). Its ``config`` holds ``judge: Literal[NAME]`` and the
    keys it adds to a metric: written in the metric, validated by that model, read as
    ``spec.judge_config`` (the built-in judges add none: the rank judge's ``step`` is a metric's own)."""

    #: it judges every sample of each cohort (the reading's ``cohort_samples``: a provider then reads
    #: one sample per point), not each cohort's aggregate
    per_sample: ClassVar[bool] = False

    @staticmethod
    def judge(
        spec: MetricGate, reading: Reading, min_samples: int, confidence: float, gates: GateSet, counts: StepCounts
    ) -> MetricResult:
        """The metric's result at this evaluation (``counts``: the step's looks and failures so far)."""
        raise NotImplementedError


class PluginError(PlaybookError):
    """A plugin that cannot be loaded (its module fails to import, or it is not a plugin)."""


P = TypeVar("P", bound=Plugin)


@dataclass
class Group(Generic[P]):
    """The plugins of one kind, by name: built-ins first, then installed entry points."""

    #: ``flags``; its entry point group is ``rollout.flags``
    name: str
    #: the key that names the plugin in the playbook (``backend``, ``kind``)
    tag: str
    #: name -> ``"module:attr"``, this package's own
    builtins: dict[str, str]
    #: the plugin a section without its tag means (``flag:`` without ``backend:`` is ``envfile``)
    default: str | None = None
    _loaded: dict[str, type[P]] | None = field(default=None, repr=False)
    _installed: list[Any] | None = field(default=None, repr=False)

    @property
    def entry_point_group(self) -> str:
        """Where installed packages register: ``rollout.flags``."""
        return f"rollout.{self.name}"

    def names(self) -> list[str]:
        """Every registered name (nothing is imported)."""
        return [*self.builtins, *(ep.name for ep in self._entry_points() if ep.name not in self.builtins)]

    def plugins(self) -> dict[str, type[P]]:
        """Every plugin, loaded (once per process)."""
        if self._loaded is None:
            found: dict[str, type[P]] = {}
            for name, where in self.builtins.items():
                found[name] = self._checked(name, functools.partial(_import, where))
            for ep in self._entry_points():
                # a built-in's name is the built-in's: an installed package adds, it never replaces
                if ep.name not in found:
                    found[ep.name] = self._checked(ep.name, ep.load, f" (entry point {ep.value} of {ep.group})")
            self._loaded = found
        return self._loaded

    def get(self, name: str) -> type[P]:
        """The plugin called ``name``; a name nobody registered names the known ones."""
        plugins = self.plugins()
        if name not in plugins:
            raise PluginError(f"unknown {self.tag} {name!r} (known: {', '.join(plugins)})")
        return plugins[name]

    def default_config(self) -> Any:
        """The config of a section written without its tag (``flag:`` left out: the envfile backend's)."""
        assert self.default is not None, f"{self.name} has no default"
        return self.get(self.default).config()

    def configs(self) -> list[type[BaseModel]]:
        """The config models of every plugin, in registration order."""
        return [plugin.config for plugin in self.plugins().values()]

    def reset(self) -> None:
        """Forget what was loaded and found installed (a test that installs a plugin package, then asks again)."""
        self._loaded = self._installed = None
        _installed_entry_points.cache_clear()

    def union(self) -> Any:
        """The discriminated union of the config models, tagged by :attr:`tag` (absent: :attr:`default`).
        An unknown or missing tag is one error naming the known ones, at the section's own path."""
        plugins = self.plugins()
        members = tuple(Annotated[plugin.config, Tag(name)] for name, plugin in plugins.items())
        known = ", ".join(repr(name) for name in plugins)
        return Annotated[
            Union[members],  # noqa: UP007 - a tuple of members: only Union[...] spells that
            Discriminator(
                self._tag_of,
                custom_error_type="unknown_plugin",
                custom_error_message=f"unknown {self.tag}; expected one of {known}",
                custom_error_context={"discriminator": self.tag, "expected_tags": known},
            ),
        ]

    def field(self) -> type:
        """The type of a playbook section of this group: resolved to :meth:`union` when the model
        that holds it is first built (give that model ``defer_build=True``)."""
        group = self

        class Section:
            @classmethod
            def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
                return handler.generate_schema(group.union())

            @classmethod
            def members(cls) -> list[type[BaseModel]]:
                """The config models it stands for (for the schema's walk over the models)."""
                return group.configs()

        Section.__name__ = Section.__qualname__ = f"{self.name.title()}Section"
        return Section

    def _tag_of(self, value: Any) -> str | None:
        raw = value.get(self.tag, self.default) if isinstance(value, dict) else getattr(value, self.tag, None)
        return raw if isinstance(raw, str) else None

    def _entry_points(self) -> list[Any]:
        if self._installed is None:
            self._installed = list(_installed_entry_points().select(group=self.entry_point_group))
        return self._installed

    def _checked(self, name: str, load: Callable[[], Any], where: str = "") -> type[P]:
        try:
            plugin = load()
        except Exception as exc:
            raise PluginError(
                f"{self.name} plugin {name!r}{where} cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc
        config = getattr(plugin, "config", None)
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise PluginError(f"{self.name} plugin {name!r}{where} has no pydantic config model (its `config`)")
        tag_field = config.model_fields.get(self.tag)
        if getattr(plugin, "name", None) != name or tag_field is None or get_args(tag_field.annotation) != (name,):
            raise PluginError(
                f"{self.name} plugin {name!r}{where}: its name and its config's {self.tag} must both be {name!r} "
                f"({self.tag}: Literal[{name!r}])"
            )
        return plugin


@functools.cache
def _installed_entry_points() -> Any:
    """Every installed entry point, read once per process for every group: a scan of the installed
    distributions costs milliseconds, and names() is asked on every validation of a metric's judge."""
    return entry_points()


def _import(where: str) -> Any:
    """The object ``"module:attr"`` names."""
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr)


#: where the flag lives: ``flag: {backend: ...}``
FLAGS: Group[FlagPlugin] = Group(
    "flags",
    "backend",
    {
        "envfile": "rollout.flags.envfile:EnvfileBackend",
        "http": "rollout.flags.http:HttpBackend",
        "command": "rollout.flags.command:CommandBackend",
        "postgres": "rollout.flags.postgres:PostgresBackend",
        "unleash": "rollout.flags.unleash:UnleashBackend",
    },
    default="envfile",
)

#: where gate metrics come from: ``providers: {NAME: {kind: ...}}``
PROVIDERS: Group[ProviderPlugin] = Group(
    "providers",
    "kind",
    {
        "prometheus": "rollout.providers.prometheus:PrometheusPlugin",
        "http": "rollout.providers.http:HttpPlugin",
        "alertmanager": "rollout.providers.alerts:AlertmanagerPlugin",
    },
)

#: what is rolled out: ``target: {kind: ...}``
TARGETS: Group[TargetPlugin] = Group(
    "targets",
    "kind",
    {
        "embedded": "rollout.targets.embedded:EmbeddedPlugin",
        "http": "rollout.targets.http:HttpPlugin",
    },
    default="embedded",
)

#: what a phase does, step by step: ``steps: [{kind: ...}]``
STEPS: Group[StepKind] = Group(
    "steps",
    "kind",
    {
        kind: f"rollout.engine.steps.{kind}:Kind"
        for kind in ("configure", "smoke", "health", "scenario", "load", "gate", "ramp", "approve", "promote")
    },
)

#: how a compare metric judges treatment against control: ``judge: mean`` (default) or ``judge: rank``
JUDGES: Group[JudgePlugin] = Group(
    "judges",
    "judge",
    {"mean": "rollout.gates.compare:MeanJudge", "rank": "rollout.gates.rank:RankJudge"},
    default="mean",
)

#: every group, by its name
GROUPS: dict[str, Group[Any]] = {group.name: group for group in (FLAGS, PROVIDERS, TARGETS, STEPS, JUDGES)}


def target_events(playbook: Playbook | None) -> str:
    """What one event of the playbook's target's traffic is called (its plugin's ``events``; without a
    playbook, the default target's): ``requests``, the embedded service's ``bookings``."""
    return TARGETS.get(playbook.target.kind if playbook is not None else str(TARGETS.default)).events
