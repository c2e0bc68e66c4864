"""commit_metadata: the horizon and the demand travel in the offset commit, extensibly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.commit_metadata import MAX_METADATA_CHARS, CommitMetadata, decode, encode

keys = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda k: k not in {"h", "d", "r", "at"}
)
values = st.from_regex(r"[A-Za-z0-9.:,\-]{0,12}", fullmatch=True)


@given(
    st.integers(min_value=0, max_value=2**63 - 1),
    st.one_of(st.none(), st.floats(min_value=0, max_value=10_000, allow_nan=False)),
    st.dictionaries(keys, values, max_size=4),
)
def test_what_is_encoded_decodes_to_the_same_horizon_demand_and_extra_fields(
    horizon: int, demand: float | None, extra: dict[str, str]
) -> None:
    decoded = decode(encode(CommitMetadata(horizon, demand, "s3u1", extra)))
    assert decoded is not None
    assert decoded.horizon == horizon
    assert decoded.extra == extra
    assert decoded.runs == "s3u1"
    if demand is None:
        assert decoded.demand is None
    else:
        assert decoded.demand == pytest.approx(demand, abs=0.05)


def test_fields_a_newer_version_adds_survive_a_read_and_a_write() -> None:
    text = "fc2:h=40;d=3.0;t=1764237600000"
    decoded = decode(text)
    assert decoded == CommitMetadata(40, 3.0, None, {"t": "1764237600000"})
    assert encode(decoded) == text


def test_the_first_format_still_gives_its_horizon() -> None:
    assert decode("fc1:horizon=120") == CommitMetadata(120)


@pytest.mark.parametrize(
    "text",
    [None, "", "x", "fc2:", "fc2:d=3.0", "fc2:h=-1", "fc2:h=1;h=2", "fc2:h=1;=2", "fc2:h=٣"],
)
def test_metadata_without_a_readable_horizon_is_foreign(text: str | None) -> None:
    assert decode(text) is None


def test_an_unreadable_demand_is_unknown_not_foreign() -> None:
    assert decode("fc2:h=5;d=lots") == CommitMetadata(5, None)
    assert decode("fc2:h=5;d=nan") == CommitMetadata(5, None)


@given(st.text(max_size=60))
def test_decoding_any_text_never_raises(text: str) -> None:
    decoded = decode(text)
    assert decoded is None or decoded.horizon >= 0


@pytest.mark.parametrize(
    "bad",
    [
        CommitMetadata(-1),
        CommitMetadata(1, None, None, {"h": "2"}),
        CommitMetadata(1, None, None, {"a b": "2"}),
        CommitMetadata(1, None, None, {"x": "a;b"}),
        CommitMetadata(1, None, "s1;x=2"),
        CommitMetadata(1, None, None, {"x": "y" * MAX_METADATA_CHARS}),
    ],
)
def test_metadata_that_could_not_be_read_back_is_refused(bad: CommitMetadata) -> None:
    with pytest.raises(ValueError, match=r"horizon|field|chars|runs"):
        encode(bad)
