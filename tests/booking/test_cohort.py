from collections import Counter

import pytest

from rollout.booking.cohort import bucket, in_rollout


@pytest.mark.parametrize(("group", "user", "expected"), [("gr1", "123", 73), ("groupX", "999", 25)])
def test_bucket_matches_unleash_reference_vectors(group, user, expected):
    # the vectors Unleash's Node, Java and Go clients all assert
    assert bucket(group, user) == expected


def test_bucket_is_in_range_and_roughly_uniform():
    values = [bucket("whatsapp_notifications", f"customer-{i}") for i in range(20_000)]
    assert min(values) == 1 and max(values) == 100
    per_decile = Counter((v - 1) // 10 for v in values)
    assert all(1700 < n < 2300 for n in per_decile.values()), per_decile


def test_ramp_is_monotonic_and_sticky():
    users = [f"u{i}" for i in range(2000)]
    previous: set[str] = set()
    for percent in (0, 10, 25, 50, 100):
        cohort = {u for u in users if in_rollout("g", u, percent)}
        assert previous <= cohort
        previous = cohort
    assert previous == set(users)
    assert not any(in_rollout("g", u, 0) for u in users)


def test_group_id_changes_the_cohort():
    users = [f"u{i}" for i in range(500)]
    a = {u for u in users if in_rollout("a", u, 10)}
    b = {u for u in users if in_rollout("b", u, 10)}
    assert a != b
