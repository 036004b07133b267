"""A phase rolled out across regions in waves: the keys and what they mean. Pure: no state, no I/O.

A phase names one ``environment:``, or ``waves:`` of regions instead, each region an environment of
its own (its file in ``environments/``, its own state row, its own flag), all running the phase's
steps::

    waves:
      - environments: [eu-west]
      - environments: [us-east, ap-south]
        after: 30m                 # every region of the wave before has held its percentage this long
    weights: {eu-west: 50, us-east: 30, ap-south: 20}   # each region's share of the customers
    max_exposure: 30%              # of all customers, while the regions before a write are unproven
    on_failure: all_regions        # or this_region

The engine reads the regions' records and decides (:mod:`rollout.engine.waves`); this module only
says what the keys hold and refuses what cannot work, each problem at its key.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rollout.util.units import Duration, Number, format_duration
from rollout.util.yamlfile import FieldProblems

#: what a breach in one region of a waved phase turns off: its own flag, or every region's
OnFailure = Literal["this_region", "all_regions"]

_NAME = r"^[a-z][a-z0-9_-]*$"


class Wave(BaseModel):
    """One wave: regions that ramp together, and how long the wave before must have held first."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    environments: list[str] = Field(min_length=1)
    #: how long every region of the wave before must have held its percentage (flag on, guarded, no
    #: write) before this wave starts; the first wave starts with the phase and takes none
    after: Duration | None = Field(None, ge=0, le=30 * 86_400)

    @field_validator("environments")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        problems = [
            ((i,), f"{name!r}: a region is an environment's name, like eu-west")
            for i, name in enumerate(value)
            if not isinstance(name, str) or not re.match(_NAME, name)
        ]
        if problems:
            raise FieldProblems(problems)
        return value


class WaveKeys(BaseModel):
    """The wave keys of a phase (all optional; without ``waves`` a phase runs in one environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: the regions in waves, in order; each region runs the phase's steps in its own environment
    waves: list[Wave] | None = Field(None, min_length=1)
    #: each region's share of the customers (any positive numbers; default: equal)
    weights: dict[str, Number] | None = None
    #: the share of all customers (percentage x weight over the total weight) no ramp write may take
    #: the phase past while a region of an earlier wave has not held its last percentage
    max_exposure: Number | None = None
    #: a breach in one region turns off ``this_region``'s flag only, or ``all_regions``' (the failing
    #: region's first, at once, then the others)
    on_failure: OnFailure | None = None

    @field_validator("max_exposure")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError(f"a share of the customers above 0% and up to 100% (got {value * 100:g}%)")
        return value

    @model_validator(mode="after")
    def _waves_consistent(self) -> WaveKeys:
        problems: list[tuple[tuple[Any, ...], str]] = []
        if self.waves is None:
            for key in ("weights", "max_exposure", "on_failure"):
                if getattr(self, key) is not None:
                    problems.append(((key,), "only for a phase with waves (this one runs in one environment)"))
            if problems:
                raise FieldProblems(problems)
            return self
        seen: dict[str, int] = {}
        for w, wave in enumerate(self.waves):
            if w == 0 and wave.after is not None:
                problems.append(
                    (
                        ("waves", 0, "after"),
                        "the first wave starts with the phase; after is how long the wave before a wave holds",
                    )
                )
            if w > 0 and wave.after is None:
                problems.append(
                    (
                        ("waves", w, "after"),
                        f"required: how long every region of wave {w} holds its percentage before wave "
                        f"{w + 1} starts (0s: as soon as each has one)",
                    )
                )
            for r, region in enumerate(wave.environments):
                if region in seen:
                    problems.append(
                        (("waves", w, "environments", r), f"region {region!r} is already in wave {seen[region] + 1}")
                    )
                seen.setdefault(region, w)
        if self.weights is not None:
            for region, weight in self.weights.items():
                if region not in seen:
                    problems.append(
                        (("weights", region), f"{region!r} is not a region of this phase ({', '.join(seen)})")
                    )
                elif not (isinstance(weight, (int, float)) and weight > 0 and weight < float("inf")):
                    problems.append((("weights", region), "a weight is a positive number (a share of the customers)"))
            missing = [region for region in seen if region not in self.weights]
            if missing:
                problems.append(
                    (
                        ("weights",),
                        f"no weight for {', '.join(missing)}: give every region a weight, or none (equal shares)",
                    )
                )
        if problems:
            raise FieldProblems(problems)
        return self

    @property
    def regions(self) -> list[str]:
        """Every region, wave by wave (empty for a one-environment phase)."""
        return [region for wave in self.waves or [] for region in wave.environments]

    def wave_of(self, region: str) -> int:
        """The (0-based) wave ``region`` is in; a ValueError for a region not in the phase."""
        for index, wave in enumerate(self.waves or []):
            if region in wave.environments:
                return index
        raise ValueError(f"{region!r} is not a region of this phase")

    def weight(self, region: str) -> float:
        """``region``'s share of the customers, before normalising (1 when no weights are given)."""
        return 1.0 if self.weights is None else float(self.weights[region])

    @property
    def failure_policy(self) -> OnFailure:
        """``on_failure``, by default ``all_regions``: the same code ships to every region, so a breach
        in one is evidence against it in all of them."""
        return self.on_failure or "all_regions"

    def wave_words(self) -> str:
        """The waves in one line: ``eu-west, then after 30m us-east + ap-south``."""
        parts = []
        for index, wave in enumerate(self.waves or []):
            regions = " + ".join(wave.environments)
            parts.append(regions if index == 0 else f"after {format_duration(wave.after or 0)} {regions}")
        return ", then ".join(parts)
