"""Cohort bucketing, identical to Unleash's gradual rollout.

``bucket`` gives each user a fixed number from 1 to 100; a user is in the rollout when that number
is at most the percentage. The number never changes, so the ramp is monotonic: a user in at 10 %
stays in at 25 %, 50 % and 100 %, as long as the group id stays the same.
"""

from __future__ import annotations

import mmh3


def bucket(group_id: str, user_id: str) -> int:
    """Return the normalized value (1-100) of ``user_id`` in ``group_id``.

    ``murmur3_32("{group_id}:{user_id}", seed=0) % 100 + 1``, unsigned, x86 variant: the same
    number Unleash's Node, Java and Go clients compute.
    """
    return mmh3.hash(f"{group_id}:{user_id}", 0, signed=False) % 100 + 1


def in_rollout(group_id: str, user_id: str, percent: int) -> bool:
    """True when the user falls inside ``percent`` (0-100) of the group."""
    return percent > 0 and bucket(group_id, user_id) <= percent
