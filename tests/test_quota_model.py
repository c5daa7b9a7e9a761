"""The pure quota arithmetic of ``model/projects.py`` (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dagmill.model.projects import Quota, check_project_name
from dagmill.model.resources import Resources

limits = st.one_of(st.none(), st.integers(0, 64_000))
memories = st.one_of(st.none(), st.integers(0, 2**40))
quotas = st.builds(Quota, limits, memories, st.one_of(st.none(), st.integers(0, 8)))
requests = st.builds(Resources, st.integers(0, 64_000), st.integers(0, 2**40), st.integers(0, 8))


def _fits(q: Quota, used: Resources, r: Resources) -> bool:
    return all(
        limit is None or u + x <= limit
        for limit, u, x in (
            (q.cpu_milli, used.cpu_milli, r.cpu_milli),
            (q.memory_bytes, used.memory_bytes, r.memory_bytes),
            (q.gpu, used.gpu, r.gpu),
        )
    )


@given(quotas, requests, requests)
def test_lacks_says_no_room_exactly_when_a_limited_resource_would_overflow(
    q: Quota, used: Resources, r: Resources
) -> None:
    assert (q.lacks(used, r) is None) == _fits(q, used, r)


@given(quotas, requests)
def test_too_big_is_what_could_never_fit_even_alone(q: Quota, r: Resources) -> None:
    assert bool(q.too_big(r)) == (not _fits(q, Resources(), r))


@given(quotas, requests)
def test_quotas_and_requests_are_stored_exactly(q: Quota, r: Resources) -> None:
    assert Quota.parse(q.to_record()) == q
    assert Resources.parse(r.to_record()) == r


@given(quotas, requests)
def test_the_machine_fills_only_what_the_quota_leaves_unlimited(q: Quota, m: Resources) -> None:
    filled = q.over(m)
    assert filled.cpu_milli == (m.cpu_milli if q.cpu_milli is None else q.cpu_milli)
    assert filled.memory_bytes == (m.memory_bytes if q.memory_bytes is None else q.memory_bytes)
    assert filled.gpu == (m.gpu if q.gpu is None else q.gpu)
    assert not filled.unlimited


@given(quotas, requests, requests, requests)
def test_lacks_kept_is_lacks_with_the_kept_room_in_use(
    q: Quota, used: Resources, kept: Resources, r: Resources
) -> None:
    assert (q.lacks_kept(used, kept, r) is None) == (q.lacks(used.plus(kept), r) is None)


def test_merged_applies_changes_and_unsets() -> None:
    q = Quota.parse({"cpu": 4, "memory": "8Gi"})
    assert q.merged(Quota(gpu=1), unset=("memory",)) == Quota(4000, None, 1)


@pytest.mark.parametrize("name", ["ml", "team-a", "x_1", "a" * 64])
def test_project_names(name: str) -> None:
    assert check_project_name(name) == name


@pytest.mark.parametrize("name", ["", "ML", "-a", "a-", "a b", "a" * 65, "é"])
def test_bad_project_names(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        check_project_name(name)
