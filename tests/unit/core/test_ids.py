from hypothesis import given
from hypothesis import strategies as st

from mailwright.core.ids import _ALPHABET, _encode, new_connection_id, new_queue_id


def _digits(n: int, width: int) -> str:
    """The plain definition: one base-51 digit at a time, least significant first."""
    out = ""
    for _ in range(width):
        n, r = divmod(n, len(_ALPHABET))
        out = _ALPHABET[r] + out
    return out


@given(st.integers(min_value=0, max_value=2**80), st.integers(min_value=1, max_value=12))
def test_encoding_is_base_51_of_fixed_width(n: int, width: int) -> None:
    assert _encode(n, width) == _digits(n, width)


@given(st.integers(min_value=0, max_value=51**9 - 2))
def test_a_later_time_sorts_later(n: int) -> None:
    assert _encode(n, 9) < _encode(n + 1, 9)


def test_ids_have_their_length_and_alphabet() -> None:
    queue_ids = {new_queue_id() for _ in range(1000)}
    assert len(queue_ids) == 1000
    for qid in queue_ids:
        assert len(qid) == 14
        assert set(qid) <= set(_ALPHABET)
    conn = new_connection_id()
    assert len(conn) == 8
    assert set(conn) <= set(_ALPHABET)
