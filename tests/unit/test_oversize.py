"""A record too large for a side topic: a truncated copy that says what was cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.core.oversize import (
    KEPT_HEADER_BYTES,
    TRUNCATED_KEY_BYTES,
    TRUNCATED_VALUE_BYTES,
    shrink,
)

OURS = (("fc.error.class", b"undecodable"), ("fc.source.offset", b"7"))


def _header(headers: tuple[tuple[str, bytes], ...], name: str) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def test_level_zero_is_the_record_as_is() -> None:
    headers = (("trace", b"t"), *OURS)
    copy = shrink(b"k", b"v" * 10, headers, 0)
    assert (copy.key, copy.value, copy.headers) == (b"k", b"v" * 10, headers)


def test_a_truncated_copy_keeps_the_start_of_the_value_and_names_the_original_sizes() -> None:
    value = bytes(range(256)) * 10_000
    copy = shrink(b"ord_1", value, (("trace", b"t"), *OURS), 1)
    assert copy.value == value[:TRUNCATED_VALUE_BYTES]
    assert copy.key == b"ord_1"
    assert _header(copy.headers, "fc.truncated.value_size") == str(len(value)).encode()
    assert _header(copy.headers, "fc.truncated.kept") == str(TRUNCATED_VALUE_BYTES).encode()
    assert _header(copy.headers, "trace") == b"t", "small original headers travel"
    assert _header(copy.headers, "fc.source.offset") == b"7", "ours travel"


def test_large_original_headers_are_dropped_and_their_size_named() -> None:
    big = (("blob", b"x" * (KEPT_HEADER_BYTES + 1)),)
    copy = shrink(b"k", b"v", big + OURS, 1)
    assert _header(copy.headers, "blob") is None
    assert (
        _header(copy.headers, "fc.truncated.headers_size")
        == str(KEPT_HEADER_BYTES + 1 + len("blob")).encode()
    )


def test_the_bare_copy_has_no_value_and_only_our_headers() -> None:
    copy = shrink(b"k" * 5000, b"v" * 100, (("trace", b"t"), *OURS), 2)
    assert copy.value is None
    assert copy.key == b"k" * TRUNCATED_KEY_BYTES
    assert all(k.startswith("fc.") for k, _ in copy.headers)
    assert _header(copy.headers, "fc.truncated.key_size") == b"5000"


_HEADERS = st.lists(
    st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=3000)), max_size=10
).map(tuple)


@given(st.binary(max_size=5000) | st.none(), st.binary(max_size=100_000) | st.none(), _HEADERS)
def test_a_shrunk_copy_is_bounded_whatever_the_record(
    key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...]
) -> None:
    for level in (1, 2):
        copy = shrink(key, value, headers + OURS, level)
        size = len(copy.key or b"") + len(copy.value or b"")
        size += sum(len(k.encode()) + len(v) for k, v in copy.headers)
        ours = sum(len(k.encode()) + len(v) for k, v in OURS)
        bound = TRUNCATED_KEY_BYTES + TRUNCATED_VALUE_BYTES + KEPT_HEADER_BYTES + ours + 200
        assert size <= bound
        assert set(OURS) <= set(copy.headers)
