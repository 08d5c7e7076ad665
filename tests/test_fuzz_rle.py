"""Property-based tests (Hypothesis) of the CheXmask RLE codec, :mod:`cxrkit.io.rle`.

What is an error (``CxrkitError``, one line naming the run, value or size) and what is not:

* accepted: space/tab/newline-separated decimal integers (a leading ``+`` too), ``start length`` pairs,
  1-based starts, runs sorted, non-overlapping (touching runs such as ``"1 2 3 2"`` are accepted and
  decode like one run), inside the ``height * width`` pixels; the empty / blank string (empty mask);
* refused: any other character (``-`` is accepted by the parser only to report a negative value),
  non-ASCII digits, an odd number of values, a start < 1, a length < 1, a value larger than the mask
  (checked before any arithmetic, so ``2**63`` and longer numbers neither overflow nor allocate),
  unsorted or overlapping runs, a height or width that is not a positive integer, and masks of more
  than :data:`cxrkit.io.rle.MAX_PIXELS` pixels.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cxrkit.errors import CxrkitError
from cxrkit.io import rle
from cxrkit.io.rle import MAX_PIXELS, area, decode, encode, parse_runs

N = settings().max_examples  # from the profile loaded in conftest.py (default / long)


def reference_decode(text: str, height: int, width: int) -> np.ndarray:
    """CheXmask's own get_mask_from_RLE: a loop over the runs."""
    runs = [int(x) for x in text.split()]
    flat = np.zeros(height * width, dtype=bool)
    for start, length in zip(runs[::2], runs[1::2]):
        flat[start - 1 : start - 1 + length] = True
    return flat.reshape(height, width)


def check_error(exc: CxrkitError) -> None:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    assert "RLE" in msg or "mask" in msg, msg  # names the string / run, or the mask size


# --- strategies -----------------------------------------------------------------------------------
shapes = st.tuples(st.integers(1, 48), st.integers(1, 48))


@st.composite
def masks(draw):
    shape = draw(shapes)
    kind = draw(st.sampled_from(["random", "blocks", "constant"]))
    if kind == "random":
        return draw(hnp.arrays(bool, shape))
    m = np.zeros(shape, bool)
    if kind == "constant":
        m[:] = draw(st.booleans())
        return m
    for _ in range(draw(st.integers(0, 4))):
        y0, x0 = draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))
        m[y0 : y0 + draw(st.integers(1, shape[0])), x0 : x0 + draw(st.integers(1, shape[1]))] = True
    return m


@st.composite
def valid_runs(draw, max_pixels: int = 3000):
    """A valid RLE (possibly with touching runs and odd whitespace) and its mask size."""
    height = draw(st.integers(1, 64))
    width = draw(st.integers(1, max(1, max_pixels // height)))
    n = height * width
    pos, values = 0, []
    while pos < n and draw(st.integers(0, 9)):  # ~ up to a few dozen runs
        pos += draw(st.integers(0, max(0, min(n - pos - 1, 200))))  # gap (0 = touching)
        length = draw(st.integers(1, n - pos))
        values += [pos + 1, length]
        pos += length
    seps = draw(st.lists(st.sampled_from([" ", "  ", "\t", "\n", " \r\n"]), min_size=len(values), max_size=len(values)))
    text = "".join(f"{v}{s}" for v, s in zip(values, seps))
    return draw(st.sampled_from(["", " ", "\n"])) + text, height, width


# Values around the interesting limits: 0, 1, the mask size, int64 and beyond, negatives.
numbers = st.one_of(
    st.integers(-3, 40),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**40]),
)
tokens = st.one_of(
    numbers.map(str),
    numbers.map(lambda v: f"+{v}" if v >= 0 else str(v)),
    st.sampled_from(["", "-", "+", "1.5", "1e3", "0x10", "nan", "inf", ",", "\x00", "\u0663", "١٢", "\ufeff", "½"]),
    st.text(max_size=4),
)


@st.composite
def rle_like(draw):
    """Strings that look like RLEs: numbers and junk tokens with random separators."""
    toks = draw(st.lists(tokens, max_size=12))
    seps = draw(st.lists(st.sampled_from([" ", "\t", "\n", "  ", ",", ""]), min_size=len(toks), max_size=len(toks)))
    return "".join(t + s for t, s in zip(toks, seps))


sizes = st.one_of(
    st.integers(-2, 64),
    st.integers(1, 2**40),
    st.sampled_from([2**14, 2**14 + 1, 2**28, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "12", [3], True, False, 3.0, 2.5, np.int64(7), np.float32(4.0)]),
)


# --- round trip -------------------------------------------------------------------------------------
@settings(max_examples=2 * N)
@given(masks())
def test_random_masks_round_trip_exactly(mask):
    s = encode(mask)
    h, w = mask.shape
    np.testing.assert_array_equal(decode(s, h, w), mask)
    np.testing.assert_array_equal(reference_decode(s, h, w), mask)
    assert area(s, h, w) == int(mask.sum())
    assert encode(decode(s, h, w)) == s  # canonical
    out = np.ones(h * w, bool)
    np.testing.assert_array_equal(decode(s, h, w, out=out), mask)
    # maximal runs: sorted, separated by at least one background pixel
    starts, lengths = parse_runs(s, h, w)
    assert (starts[1:] > starts[:-1] + lengths[:-1]).all()


@settings(max_examples=2 * N)
@given(valid_runs())
def test_valid_rle_decodes_like_chexmask_loop(case):
    text, h, w = case
    m = decode(text, h, w)
    assert m.shape == (h, w) and m.dtype == bool
    np.testing.assert_array_equal(m, reference_decode(text, h, w))
    assert encode(m) == encode(reference_decode(text, h, w))
    assert area(text, h, w) == int(m.sum())


@settings(max_examples=max(10, N // 2))
@given(valid_runs(max_pixels=400_000), st.booleans())
def test_decode_into_buffer_in_chunks(case, dirty):
    """Masks larger than the 120 KiB chunk of the ``out=`` path, into a dirty or clean buffer."""
    text, h, w = case
    out = np.full(h * w, dirty, dtype=bool)
    got = decode(text, h, w, out=out)
    assert np.shares_memory(got, out)
    np.testing.assert_array_equal(got, reference_decode(text, h, w))


# --- malformed input ----------------------------------------------------------------------------------
def _decode_or_error(text, h, w):
    try:
        m = decode(text, h, w)
    except CxrkitError as exc:
        check_error(exc)
        return None
    return m


@given(st.one_of(st.text(), rle_like()), st.integers(1, 40), st.integers(1, 40))
def test_any_string_decodes_or_raises_cxrkit_error(text, h, w):
    m = _decode_or_error(text, h, w)
    if m is not None:  # accepted: then it is exactly what CheXmask's loop makes of it
        assert m.shape == (h, w) and m.dtype == bool
        np.testing.assert_array_equal(m, reference_decode(text, h, w))
        starts, lengths = parse_runs(text, h, w)
        assert (starts >= 0).all() and (lengths >= 1).all() and starts[-1:].sum() + lengths[-1:].sum() <= h * w


@given(st.lists(numbers, max_size=10), st.integers(1, 40), st.integers(1, 40))
def test_any_numbers_decode_or_raise_within_bounded_memory(values, h, w):
    """Huge, negative, unsorted, overlapping or odd numbers of values: never more than a few KiB."""
    text = " ".join(map(str, values))
    tracemalloc.start()
    try:
        m = _decode_or_error(text, h, w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 + 4 * h * w, peak
    ok = (
        len(values) % 2 == 0
        and all(1 <= v <= h * w for v in values)
        and all(values[i] + values[i + 1] <= values[i + 2] for i in range(0, len(values) - 2, 2))
        and (not values or values[-2] + values[-1] - 1 <= h * w)
    )
    assert (m is not None) == ok, (text, h, w)


def _positive_int(v) -> int | None:
    try:
        return int(v) if not isinstance(v, (bool, str)) and int(v) == v and v > 0 else None
    except (TypeError, ValueError, OverflowError):
        return None


@given(sizes, sizes)
def test_any_size_decodes_or_raises_without_allocating(h, w):
    ih, iw = _positive_int(h), _positive_int(w)
    assume(ih is None or iw is None or ih * iw <= 10**6 or ih * iw > MAX_PIXELS)  # no 256 MiB masks here
    tracemalloc.start()
    try:
        try:
            m = decode("1 1", h, w)
        except CxrkitError as exc:
            check_error(exc)
            m = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (m is None) == (ih is None or iw is None or ih * iw > MAX_PIXELS), (h, w)
    if m is None:
        assert peak < 64 * 1024, peak
    else:
        assert m.shape == (int(h), int(w)) and m.sum() == 1
        assert int(h) * int(w) <= MAX_PIXELS and peak < 64 * 1024 + 2 * m.size


def test_size_limit_is_checked_before_allocating():
    side = 2**14
    assert decode("", side, side).shape == (side, side)  # exactly MAX_PIXELS is allowed
    for h, w in ((side, side + 1), (2**31, 2**31), (10**30, 1)):
        with pytest.raises(CxrkitError, match="more than the 268435456"):
            decode("", h, w)
        with pytest.raises(CxrkitError, match="more than the 268435456"):
            parse_runs("1 1", h, w)


@pytest.mark.parametrize(
    "text, message",
    [
        ("9223372036854775807 9223372036854775807", "start 9223372036854775807, past the"),
        ("2 9223372036854775807", "length 9223372036854775807, past the"),  # used to wrap around in start + length
        ("-9223372036854775808 1", "start -9223372036854775808; starts are 1-based"),  # used to wrap in start - 1
        ("-99999999999999999999 1", "start -99999999999999999999"),
        ("1 " + "9" * 60, "length 999999999999999999999999999..., past the"),
    ],
)
def test_int64_overflow_is_an_error_not_a_crash(text, message):
    """Found by fuzzing: start + length overflowed int64, passed the checks and crashed np.repeat."""
    with pytest.raises(CxrkitError, match=message):
        decode(text, 3, 4)
    with pytest.raises(CxrkitError, match=message):
        decode(text, 3, 4, out=np.zeros((3, 4), bool))


@pytest.mark.parametrize("h, w", [(float("nan"), 4), (float("inf"), 4), (None, 4), ("3", 4), ([3], 4), (3, 2.5)])
def test_bad_sizes_are_cxrkit_errors(h, w):
    with pytest.raises(CxrkitError, match="must be a positive integer"):
        decode("1 1", h, w)


def test_integral_float_sizes_decode():
    assert decode("1 2", 3.0, np.float32(4.0)).shape == (3, 4)  # used to fail inside np.zeros (TypeError)
    assert rle._check_size(np.int64(3), 4) == (3, 4)
