"""The service's flag decisions through OpenFeature, and what every flag source is.

:class:`FeatureFlags` is the one place the service asks "does this customer get a WhatsApp
confirmation?": the flag must be on in the live settings (the kill direction: a flag-off stops the
next send, whatever the provider) and the source's OpenFeature provider must put the customer in,
with the customer id as the targeting key.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, FeatureProvider, Metadata
from openfeature.provider.no_op_provider import NoOpProvider

from rollout.booking.cohort import in_rollout

if TYPE_CHECKING:
    from rollout.booking.service.settings import LiveSettings, Settings

#: the flag's key where the provider does not name it; also the default Unleash feature, so a customer
#: falls in the same bucket whether the flag is in the env file or in Unleash (the default group)
FLAG_KEY = "whatsapp_notifications"

_domains = itertools.count(1)


class FlagSource(Protocol):
    """Where the service's flag comes from (see :mod:`rollout.booking.flags`)."""

    #: ``envfile``, ``postgres`` or ``unleash``: reported in health and metrics
    name: str
    #: the key the service asks its provider for
    flag_key: str
    #: this process's name in its fleet, when the source has one
    replica_id: str | None

    def start(self, live: LiveSettings) -> None:
        """Start following the store into ``live`` (a thread of its own)."""
        ...

    def stop(self) -> None:
        """Stop following; release connections."""
        ...

    def provider(self, live: LiveSettings) -> FeatureProvider:
        """The OpenFeature provider that decides, per customer, who is in."""
        ...

    def refreshed_at(self) -> float | None:
        """Wall time of the last successful read of the store (None: it is the env file itself)."""
        ...


class BooleanProvider(AbstractProvider):
    """An OpenFeature provider of one boolean flag: every other type answers its default with
    ``TYPE_MISMATCH``."""

    name = "rollout"

    def get_metadata(self) -> Metadata:
        return Metadata(name=self.name)

    def _mismatch(self, default: Any) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(
            value=default, reason=Reason.ERROR, error_code=ErrorCode.TYPE_MISMATCH, error_message="a boolean flag"
        )

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._mismatch(default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._mismatch(default_value)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._mismatch(default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._mismatch(default_value)


class SettingsProvider(BooleanProvider):
    """The flag as the live settings hold it (the env file, or the flag row laid over it): on, and
    the customer's Unleash-compatible bucket within the percentage (:mod:`rollout.booking.cohort`)."""

    name = "rollout-settings"

    def __init__(self, live: LiveSettings) -> None:
        super().__init__()
        self._live = live

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        settings = self._live.current()
        if not settings.notifications_enabled:
            return FlagResolutionDetails(value=False, reason=Reason.DISABLED)
        key = evaluation_context.targeting_key if evaluation_context else None
        if not key:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
                error_message="the customer id is the targeting key",
            )
        inside = in_rollout(settings.rollout_group, key, settings.rollout_percent)
        return FlagResolutionDetails(value=inside, reason=Reason.SPLIT)


class EnvFileSource:
    """The default: the env file is the flag; nothing to follow, nothing to lease."""

    name = "envfile"
    flag_key = FLAG_KEY
    replica_id: str | None = None

    def start(self, live: LiveSettings) -> None:
        """Nothing to follow: the live settings re-read the file themselves."""

    def stop(self) -> None:
        """Nothing to release."""

    def provider(self, live: LiveSettings) -> FeatureProvider:
        return SettingsProvider(live)

    def refreshed_at(self) -> float | None:
        return None


class FeatureFlags:
    """The service's OpenFeature client, bound to its source's provider in a domain of its own (so
    two services in one process never share a provider)."""

    def __init__(self, source: FlagSource, live: LiveSettings) -> None:
        self.source = source
        self._domain = f"rollout-service-{next(_domains)}"
        api.set_provider(source.provider(live), self._domain)
        self._client = api.get_client(self._domain)

    def in_treatment(self, settings: Settings, customer_id: str) -> bool:
        """Does ``customer_id`` get a WhatsApp confirmation now? Off in ``settings`` is off for all."""
        if not settings.notifications_enabled:
            return False
        return self._client.get_boolean_value(self.source.flag_key, False, EvaluationContext(targeting_key=customer_id))

    def view(self) -> dict[str, Any]:
        """What health and metrics report of the source: its name and its last refresh."""
        return {"flag_provider": self.source.name, "flag_refreshed_at": self.source.refreshed_at()}

    def close(self) -> None:
        """Unbind the provider (OpenFeature shuts it down)."""
        api.set_provider(NoOpProvider(), self._domain)
