"""retry.py: attempt number -> seconds to wait."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.retry import RetryPolicy


def test_fixed_delay() -> None:
    policy = RetryPolicy(retries=5, delay=2.5)
    assert [policy.delay_for(a) for a in range(1, 6)] == [2.5] * 5


def test_backoff_doubles() -> None:
    policy = RetryPolicy(retries=5, delay=1.0, backoff=True)
    assert [policy.delay_for(a) for a in range(1, 6)] == [1, 2, 4, 8, 16]


def test_backoff_custom_factor() -> None:
    policy = RetryPolicy(retries=4, delay=0.5, backoff=3)
    assert [policy.delay_for(a) for a in range(1, 5)] == [0.5, 1.5, 4.5, 13.5]


def test_backoff_is_capped_by_backoff_max() -> None:
    policy = RetryPolicy(retries=20, delay=1.0, backoff=True, backoff_max=10.0)
    assert [policy.delay_for(a) for a in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay_for(500) == 10.0  # no OverflowError for huge attempt numbers


def test_attempt_below_one_uses_the_base_delay() -> None:
    assert RetryPolicy(delay=3.0, backoff=True).delay_for(0) == 3.0


def test_negative_delay_is_zero() -> None:
    assert RetryPolicy(delay=-1.0).delay_for(1) == 0.0


@given(attempt=st.integers(1, 40), delay=st.floats(0.0, 100.0), seed=st.integers(0, 2**32))
def test_jitter_stays_within_half_and_full_delay(attempt: int, delay: float, seed: int) -> None:
    plain = RetryPolicy(delay=delay, backoff=True, backoff_max=300.0)
    jittered = RetryPolicy(delay=delay, backoff=True, backoff_max=300.0, jitter=True)
    full = plain.delay_for(attempt)
    got = jittered.delay_for(attempt, random.Random(seed))
    assert full / 2 <= got <= full


def test_jitter_spreads_values() -> None:
    policy = RetryPolicy(delay=10.0, jitter=True)
    rng = random.Random(1)
    values = {policy.delay_for(1, rng) for _ in range(50)}
    assert len(values) > 40
    assert min(values) < 6.0 and max(values) > 9.0


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = RetryPolicy(delay=10.0, backoff=True, jitter=True)
    assert policy.delay_for(3, random.Random(7)) == policy.delay_for(3, random.Random(7))


@pytest.mark.parametrize("backoff", [False, True])
def test_jitter_uses_the_global_rng_by_default(backoff: bool) -> None:
    got = RetryPolicy(delay=4.0, backoff=backoff, jitter=True).delay_for(1)
    assert 2.0 <= got <= 4.0


def test_backoff_cap_holds_for_very_many_attempts() -> None:
    assert RetryPolicy(retries=5000, backoff=True, backoff_max=60.0).delay_for(1100) == 60.0
