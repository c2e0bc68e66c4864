"""SeenFilter: no applied eventId is missed within the window; memory stays a few bytes per id."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.dedupe import SeenFilter, decode_applied, encode_applied
from tests.strategies import event_ids

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


@given(
    added=st.lists(
        st.tuples(event_ids, st.integers(min_value=0, max_value=30 * DAY_MS)), max_size=200
    ),
    later=st.integers(min_value=0, max_value=WEEK_MS),
)
def test_an_id_added_within_the_window_is_never_missed(
    added: list[tuple[str, int]], later: int
) -> None:
    seen = SeenFilter(WEEK_MS)
    for event_id, at_ms in sorted(added, key=lambda pair: pair[1]):
        seen.add(event_id, at_ms)
    newest = max((at for _, at in added), default=0)
    asked = sorted((max(newest, at_ms + later), event_id, at_ms) for event_id, at_ms in added)
    for now, event_id, at_ms in asked:  # time only moves forward
        if now <= at_ms + WEEK_MS:
            assert seen.might_contain(event_id, now), (event_id, at_ms, now)


def test_a_duplicate_a_day_later_is_recognised_and_one_older_than_the_window_is_forgotten() -> None:
    seen = SeenFilter(WEEK_MS)
    seen.add("evt-original", at_ms=1_000)
    assert seen.might_contain("evt-original", now_ms=1_000 + DAY_MS)
    assert seen.might_contain("evt-original", now_ms=1_000 + WEEK_MS)
    assert not seen.might_contain("evt-original", now_ms=1_000 + WEEK_MS + 2 * DAY_MS)
    assert seen.nbytes == 0, "expired generations are freed"


def test_ids_never_added_are_rarely_reported_and_memory_is_a_few_bytes_per_id() -> None:
    seen = SeenFilter(WEEK_MS)
    for i in range(100_000):
        seen.add(f"applied-{i}", at_ms=i)
    false_hits = sum(seen.might_contain(f"other-{i}", now_ms=100_000) for i in range(20_000))
    assert false_hits / 20_000 < 0.001
    assert seen.count == 100_000
    seen.settle()
    assert seen.nbytes / seen.count == 4, "a 32-bit fingerprint per id"
    assert all(seen.might_contain(f"applied-{i}", now_ms=100_000) for i in range(0, 100_000, 7))


def test_an_id_restored_with_a_timestamp_older_than_the_window_is_not_kept() -> None:
    seen = SeenFilter(WEEK_MS)
    seen.expire(now_ms=10 * WEEK_MS)
    seen.add("evt-ancient", at_ms=WEEK_MS)
    assert seen.count == 0


@given(st.lists(event_ids, max_size=30))
def test_changelog_values_name_exactly_their_event_ids(ids: list[str]) -> None:
    assert decode_applied(encode_applied(ids)) == tuple(ids)


def test_a_changelog_value_that_is_not_ours_names_nothing() -> None:
    assert decode_applied(b"something else") == ()
    assert decode_applied(None) == ()
