"""What a playbook may say of the embedded service alone: a smoke step's ``booking`` check and the
``scenario`` step's scenarios. Registered by name (:data:`rollout.playbook.model.CHECKS`,
:data:`rollout.playbook.plugins.STEPS`), so the playbook's model never names them."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from rollout.playbook.model import Duration, StepConfig, _Model
from rollout.playbook.plugins import Plugin


class BookingCheck(_Model):
    """Create a test booking and wait for its WhatsApp notification to reach ``expect``."""

    #: only the embedded service speaks its booking API (an http target refuses it)
    embedded_only: ClassVar[bool] = True

    type: Literal["booking"]
    name: str
    phone: str = "+919876543210"
    customer_id: str | None = None
    expect: Literal["sent", "failed", "skipped", "pending"] = "sent"
    reason: str | None = None
    within: Duration = Field(30.0, gt=0, le=600)


class BookingCheckType(Plugin):
    """The ``booking`` check type."""

    name = "booking"
    config = BookingCheck


class ScenarioStep(StepConfig):
    """One of the seed's error scenarios, provoked through the sandbox's fault injection."""

    #: only the embedded service has these scenarios (an http target refuses the step)
    embedded_only: ClassVar[bool] = True
    #: it runs against what a configure step applied
    needs_configure: ClassVar[bool] = True

    kind: Literal["scenario"]
    scenario: Literal["invalid_phone", "provider_timeout", "circuit_breaker"]
    within: Duration = Field(60.0, gt=0, le=900)
