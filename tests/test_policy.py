"""The refresh policy alone: plain values in, decisions out (no server, no clock, no lock).

Each property states a promise of the engine (README, "Refresh behaviour") for
every lifetime, moment and failure record hypothesis can find.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import assume, given
from hypothesis import strategies as st

import assume_role_chain as arc

Action = arc._Action
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)

LIFETIMES = st.floats(min_value=1.0, max_value=129_600.0)  # 1 s .. 36 h (GetSessionToken's maximum)
OFFSETS = st.floats(min_value=-10.0, max_value=200_000.0)  # seconds after issue
FIXED = st.none() | st.floats(min_value=0.0, max_value=5000.0)
POLICIES = st.builds(arc._RefreshPolicy, advisory=FIXED, mandatory=FIXED)
BACKOFFS = st.builds(arc._Backoff, failures=st.integers(0, 50), retry_at=st.floats(-1e6, 1e6))
JITTER = st.floats(min_value=0.5, max_value=1.0)
MONOTONIC = st.floats(min_value=-1e6, max_value=1e6)


def schedule(policy: arc._RefreshPolicy, lifetime: float) -> arc._Schedule:
    return policy.schedule(T0, T0 + dt.timedelta(seconds=lifetime))


@given(lifetime=LIFETIMES)
def test_scaled_windows_nest_and_never_exceed_botocores(lifetime: float) -> None:
    windows = arc._RefreshPolicy().windows(lifetime)
    assert windows == arc.refresh_windows(lifetime)
    assert lifetime > windows.advisory >= windows.mandatory >= windows.margin > 0
    assert (windows.advisory, windows.mandatory, windows.margin) <= (900, 600, 60)
    if lifetime >= 3600:
        assert windows == arc.RefreshWindows(900, 600, 60)


@given(policy=POLICIES, lifetime=LIFETIMES)
def test_fixed_windows_are_kept_and_the_advisory_window_contains_the_mandatory_one(policy: arc._RefreshPolicy, lifetime: float) -> None:
    windows = policy.windows(lifetime)
    if policy.advisory is not None:
        assert windows.advisory == policy.advisory
    if policy.mandatory is not None:
        assert windows.mandatory == policy.mandatory
    if policy.advisory is None or policy.mandatory is None:
        assert windows.advisory >= windows.mandatory
    assert windows.margin == arc.refresh_windows(lifetime).margin


@given(policy=POLICIES, lifetime=LIFETIMES, offset=OFFSETS)
def test_without_failures_the_action_follows_the_state(policy: arc._RefreshPolicy, lifetime: float, offset: float) -> None:
    plan = schedule(policy, lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    left = (plan.expiry - now).total_seconds()
    windows = plan.windows
    # datetimes hold microseconds: within one of a window's edge either side is right
    assume(all(abs(left - edge) > 1e-6 for edge in (windows.margin, windows.mandatory, windows.advisory)))
    action = arc._RefreshPolicy.decide(plan, now, arc._Backoff(), 0.0)
    if left <= plan.windows.margin:
        assert action is Action.REFRESH_AND_WAIT  # never signed inside the margin
    elif left < plan.windows.mandatory:
        assert action is Action.REFRESH_AND_WAIT
    elif left < plan.windows.advisory:
        assert action is Action.REFRESH_IN_BACKGROUND
    else:
        assert action is Action.USE


@given(lifetime=LIFETIMES, first=OFFSETS, second=OFFSETS)
def test_the_action_only_escalates_as_time_passes(lifetime: float, first: float, second: float) -> None:
    order = [Action.USE, Action.REFRESH_IN_BACKGROUND, Action.REFRESH_AND_WAIT]
    plan = schedule(arc._RefreshPolicy(), lifetime)
    earlier, later = sorted((first, second))
    actions = [arc._RefreshPolicy.decide(plan, T0 + dt.timedelta(seconds=s), arc._Backoff(), 0.0) for s in (earlier, later)]
    assert order.index(actions[0]) <= order.index(actions[1])


@given(policy=POLICIES, lifetime=LIFETIMES, offset=OFFSETS, backoff=BACKOFFS, monotonic=MONOTONIC)
def test_unusable_credentials_are_never_used(policy: arc._RefreshPolicy, lifetime: float, offset: float,
                                             backoff: arc._Backoff, monotonic: float) -> None:
    plan = schedule(policy, lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    action = arc._RefreshPolicy.decide(plan, now, backoff, monotonic)
    if not arc._RefreshPolicy.is_usable(plan, now):
        expected = Action.REFRESH_AND_WAIT if monotonic >= backoff.retry_at else Action.FAIL
        assert action is expected
    else:
        assert action is not Action.FAIL


@given(backoff=BACKOFFS, monotonic=MONOTONIC, now_offset=OFFSETS)
def test_no_credentials_yet_means_fetch_and_wait_unless_backing_off(backoff: arc._Backoff, monotonic: float, now_offset: float) -> None:
    action = arc._RefreshPolicy.decide(None, T0 + dt.timedelta(seconds=now_offset), backoff, monotonic)
    assert action is (Action.REFRESH_AND_WAIT if monotonic >= backoff.retry_at else Action.FAIL)


@given(policy=POLICIES, lifetime=LIFETIMES, offset=OFFSETS, backoff=BACKOFFS, monotonic=MONOTONIC)
def test_usable_credentials_are_served_while_backing_off(policy: arc._RefreshPolicy, lifetime: float, offset: float,
                                                         backoff: arc._Backoff, monotonic: float) -> None:
    plan = schedule(policy, lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    if arc._RefreshPolicy.is_usable(plan, now) and monotonic < backoff.retry_at:
        assert arc._RefreshPolicy.decide(plan, now, backoff, monotonic) is Action.USE


@given(failures=st.integers(0, 60), monotonic=MONOTONIC, jitter=JITTER)
def test_backoff_doubles_from_one_second_to_thirty_with_jitter(failures: int, monotonic: float, jitter: float) -> None:
    policy = arc._RefreshPolicy()
    after = policy.after_failure(arc._Backoff(failures, 0.0), None, T0, monotonic, jitter)
    delay = after.retry_at - monotonic
    assert after.failures == failures + 1
    assert abs(delay - min(30.0, 2.0**failures) * jitter) <= 1e-6 * max(1.0, abs(monotonic))
    assert not after.allows_attempt(monotonic + delay / 2)
    assert after.allows_attempt(after.retry_at)


@given(failures=st.integers(0, 60), lifetime=LIFETIMES, offset=OFFSETS, monotonic=MONOTONIC, jitter=JITTER)
def test_a_retry_comes_before_usable_credentials_run_out(failures: int, lifetime: float, offset: float,
                                                        monotonic: float, jitter: float) -> None:
    policy = arc._RefreshPolicy()
    plan = schedule(policy, lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    after = policy.after_failure(arc._Backoff(failures, 0.0), plan, now, monotonic, jitter)
    if arc._RefreshPolicy.is_usable(plan, now):
        assert after.retry_at - monotonic <= (plan.usable_until - now).total_seconds() + 1e-6
    assert after.retry_at >= monotonic


@given(lifetime=LIFETIMES, offset=OFFSETS, backoff=BACKOFFS, monotonic=MONOTONIC)
def test_a_proactive_refresher_is_due_whenever_a_caller_would_refresh(lifetime: float, offset: float,
                                                                      backoff: arc._Backoff, monotonic: float) -> None:
    plan = schedule(arc._RefreshPolicy(), lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    action = arc._RefreshPolicy.decide(plan, now, backoff, monotonic)
    due = arc._RefreshPolicy.seconds_until_due(plan, now, backoff, monotonic)
    if action in (Action.REFRESH_IN_BACKGROUND, Action.REFRESH_AND_WAIT):
        assert due <= 0
    if due > 0:
        assert action in (Action.USE, Action.FAIL)


@given(lifetime=LIFETIMES, offset=OFFSETS)
def test_a_cache_entry_is_taken_only_while_fresh(lifetime: float, offset: float) -> None:
    plan = schedule(arc._RefreshPolicy(), lifetime)
    now = T0 + dt.timedelta(seconds=offset)
    fresh = arc._RefreshPolicy.is_fresh(plan, now)
    assert fresh == (arc._RefreshPolicy.decide(plan, now, arc._Backoff(), 0.0) is Action.USE)
    if fresh:
        assert arc._RefreshPolicy.is_usable(plan, now)


@given(policy=POLICIES, lifetime=LIFETIMES)
def test_fixed_windows_as_long_as_the_lifetime_are_reported(policy: arc._RefreshPolicy, lifetime: float) -> None:
    end = T0 + dt.timedelta(seconds=lifetime)
    fixed = max(policy.advisory or 0.0, policy.mandatory or 0.0)
    expected = fixed if fixed and fixed >= (end - T0).total_seconds() else None
    assert policy.windows_exceed_lifetime(T0, end) == expected
