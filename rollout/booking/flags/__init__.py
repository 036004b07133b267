"""Where the booking service's WhatsApp flag comes from, and who decides which customer is in.

Every decision goes through OpenFeature (:mod:`rollout.booking.flags.base`): the service asks its
provider for the flag with the customer id as the targeting key. A *flag source* is chosen when the
service starts and keeps the live settings' flag and percentage current:

- ``envfile`` (the default): the env file itself, re-read within 20 ms of a change;
- ``postgres``: a fleet's flag row, LISTEN/NOTIFY (:mod:`rollout.booking.flags.postgres`);
- ``unleash``: a feature in an Unleash server, through its SDK (:mod:`rollout.booking.flags.unleash`).

A source that follows a remote store holds its flag as a lease: cut off from the store for longer,
the service stops sending (fail closed). A new source is one module here.
"""

from __future__ import annotations

from rollout.booking.flags.base import FLAG_KEY, FeatureFlags, FlagSource, SettingsProvider

__all__ = ["FLAG_KEY", "FeatureFlags", "FlagSource", "SettingsProvider"]
