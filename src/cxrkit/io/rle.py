"""CheXmask run-length encoding (RLE) of binary masks.

Format (as in the CheXmask database): a string of space-separated ``start length`` pairs over the
row-major (C-order) flattening of a ``height x width`` mask; ``start`` is 1-based, runs cover the
foreground pixels, sorted, non-overlapping. An empty string is the empty mask. Pixel ``(row, col)``
has flat index ``row * width + col`` (0-based), i.e. RLE start ``row * width + col + 1``.

Both directions are vectorized: :func:`decode` parses the string with numpy's C parser, takes a
zeroed mask from ``np.zeros`` (``calloc``: pages of a fresh allocation stay unmapped until written) and
writes only the span from the first run's start to the last run's end, with one ``np.repeat`` over the
alternating run / gap lengths (no Python loop over runs); so a fresh mask faults in only the pages its
runs touch, as CheXmask's own slice-per-run loop does, and a recycled one costs one ``memset`` plus
the span. With ``out=`` it decodes in place into a reused buffer. :func:`encode` finds the
transitions with one comparison over the flat mask.
:func:`encode` is canonical (maximal runs), so ``encode(decode(s, h, w)) == s`` for every string the
CheXmask tools wrote.
"""

from __future__ import annotations

import numpy as np

from cxrkit.errors import CxrkitError

__all__ = ["decode", "encode", "parse_runs", "area", "MAX_PIXELS"]

_ALLOWED = frozenset(b"0123456789 \t\r\n")
#: Largest mask (height * width pixels) decoded or validated: 16384 x 16384 (256 MiB as bool). A
#: bigger size raises :class:`CxrkitError` before anything is allocated.
MAX_PIXELS = 2**28


def _describe(rle: str) -> str:
    return repr(rle if len(rle) <= 40 else rle[:37] + "...")


def _token(data: bytes, k: int) -> str:
    """The ``k``-th value as written (the parser saturates numbers beyond int64), shortened."""
    tok = data.split()[k].decode("ascii")
    return tok if len(tok) <= 30 else tok[:27] + "..."


def parse_runs(rle: str, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse and validate an RLE string into 0-based ``starts`` and ``lengths`` (int64 arrays).

    Raises :class:`CxrkitError` naming the problem (and the run) unless the string is a sequence of
    non-negative integer pairs with ``start >= 1``, ``length >= 1``, runs sorted and non-overlapping
    and the last run inside the ``height * width`` pixels (touching runs, ``"1 2 3 2"``, are accepted).
    ``height``/``width`` must be positive integers (integral floats pass) with ``height * width <=``
    :data:`MAX_PIXELS`. Numbers beyond the mask are refused before any arithmetic, so a huge number
    never overflows or allocates.
    """
    if not isinstance(rle, str):
        raise CxrkitError(f"RLE must be a string of 'start length' pairs, got {type(rle).__name__}")
    height, width = _check_size(height, width)
    n_pixels = height * width
    try:
        data = rle.encode("ascii")
    except UnicodeEncodeError:
        raise CxrkitError(f"RLE {_describe(rle)} has non-ASCII characters; expected digits and spaces") from None
    try:
        # C parser; raises ValueError on any token that is not a (signed) decimal integer.
        values = np.fromstring(data, dtype=np.int64, sep=" ") if data.strip() else np.empty(0, np.int64)
    except ValueError:
        bad = next((chr(c) for c in data if c not in _ALLOWED), "?")
        raise CxrkitError(
            f"RLE {_describe(rle)} has the character {bad!r}; expected space-separated integer 'start length' pairs"
        ) from None
    if values.size % 2:
        raise CxrkitError(f"RLE {_describe(rle)} has an odd number of values ({values.size}); expected 'start length' pairs")
    if values.size:
        # Every value must lie in 1..n_pixels before any arithmetic: then start - 1 and start + length
        # cannot overflow int64 (the C parser saturates longer numbers at -2**63 / 2**63 - 1).
        if values.max() > n_pixels:
            k = int(np.argmax(values > n_pixels))
            raise CxrkitError(
                f"RLE run {k // 2} has {'start' if k % 2 == 0 else 'length'} {_token(data, k)}, past the "
                f"{height}x{width} = {n_pixels} pixels of the mask"
            )
        if values[0::2].min() < 1:
            k = int(np.argmax(values[0::2] < 1))
            raise CxrkitError(f"RLE run {k} has start {_token(data, 2 * k)}; starts are 1-based (>= 1)")
    starts = values[0::2] - 1
    lengths = values[1::2]
    if starts.size:
        if lengths.min() < 1:
            k = int(np.argmax(lengths < 1))
            raise CxrkitError(f"RLE run {k} (start {starts[k] + 1}) has length {lengths[k]}; expected >= 1")
        ends = starts + lengths
        if starts.size > 1:
            gaps = starts[1:] - ends[:-1]
            if gaps.min() < 0:
                k = int(np.argmax(gaps < 0)) + 1
                raise CxrkitError(
                    f"RLE run {k} (start {starts[k] + 1}) starts before the previous run ends "
                    f"(start {starts[k - 1] + 1}, length {lengths[k - 1]}); expected sorted, non-overlapping runs"
                )
        if ends[-1] > n_pixels:
            raise CxrkitError(
                f"RLE run {starts.size - 1} (start {starts[-1] + 1}, length {lengths[-1]}) ends at pixel {ends[-1]}, "
                f"past the {height}x{width} = {n_pixels} pixels of the mask"
            )
    return starts, lengths


def decode(rle: str, height: int, width: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a CheXmask RLE string into a ``(height, width)`` bool mask (``mask[row, col]``).

    Vectorized: the mask comes zeroed from ``np.zeros`` and only the span from the first run's start
    to the last run's end is written, as one ``np.repeat`` of alternating True/False over the run and
    gap lengths. A freshly allocated mask therefore faults in only the pages under that span (the
    rows the structure covers: a median of 54 % of the pages of the real 1024 x 1024 CheXmask masks),
    which is what makes a loop that keeps every mask fast; a mask recycled by the allocator costs one
    ``memset`` plus the span. With ``out`` (a C-contiguous bool array of ``height * width`` elements,
    e.g. one slice of a preallocated batch) the mask is written in place (the same span write, zeros
    before and after it), so repeated decodes into the same buffer take no page faults; ``out`` is
    returned reshaped to ``(height, width)``. Raises :class:`CxrkitError` for a malformed string
    (see :func:`parse_runs`) or an unsuitable ``out``.
    """
    starts, lengths = parse_runs(rle, height, width)
    height, width = _check_size(height, width)  # Python ints (parse_runs checked them)
    if out is not None:
        return _decode_into(out, starts, lengths, height, width)
    flat = np.zeros(height * width, dtype=bool)
    if starts.size:
        _fill_span(flat, starts, lengths)
    return flat.reshape(height, width)


def _decode_into(out: np.ndarray, starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> np.ndarray:
    n_pixels = int(height) * int(width)
    if not isinstance(out, np.ndarray) or out.dtype != bool or out.size != n_pixels or not out.flags.c_contiguous:
        desc = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise CxrkitError(f"out must be a C-contiguous bool array of {height}x{width} elements, got {desc}")
    if not out.flags.writeable:
        raise CxrkitError("out is read-only")
    flat = out.reshape(-1)
    if starts.size == 0:
        flat.fill(False)
        return flat.reshape(height, width)
    flat[: int(starts[0])] = False
    flat[int(starts[-1] + lengths[-1]) :] = False
    _fill_span(flat, starts, lengths)
    return flat.reshape(height, width)


def _fill_span(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Write the runs and the gaps between them into ``flat[starts[0]:ends[-1]]``, nothing outside.

    One ``np.repeat`` of alternating True/False over the run and gap lengths (run, gap, run, ...,
    run), copied into place. Its temporary is at most the span; glibc serves it from the heap once a
    block of that size has been freed (its mmap threshold adapts), so steady-state loops take no page
    faults for it.
    """
    k = starts.size
    counts = np.empty(2 * k - 1, dtype=np.int64)
    counts[0::2] = lengths
    counts[1::2] = starts[1:] - (starts[:-1] + lengths[:-1])
    values = np.zeros(2 * k - 1, dtype=bool)
    values[0::2] = True
    flat[int(starts[0]) : int(starts[-1] + lengths[-1])] = np.repeat(values, counts)


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (bool, or any numeric dtype where nonzero = foreground) as a CheXmask RLE string.

    Runs are maximal (canonical), starts 1-based over the C-order flattening; the empty mask gives ``""``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise CxrkitError(f"encode expects a 2-D (height, width) mask, got shape {m.shape}")
    if m.dtype != bool:
        m = m != 0
    flat = np.ascontiguousarray(m).reshape(-1)
    if flat.size == 0:
        return ""
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    edges[1::2] -= edges[0::2]  # end -> length
    edges[0::2] += 1  # 0-based -> 1-based start
    return " ".join(map(str, edges.tolist()))


def area(rle: str, height: int, width: int) -> int:
    """Number of foreground pixels of an RLE mask without decoding it (validates like :func:`decode`)."""
    _, lengths = parse_runs(rle, height, width)
    return int(lengths.sum())


def _check_size(height: int, width: int) -> tuple[int, int]:
    """Validate a mask size; returns it as Python ints. At most :data:`MAX_PIXELS` pixels."""
    out = []
    for name, value in (("height", height), ("width", width)):
        try:
            ok = not isinstance(value, (bool, str)) and int(value) == value and value > 0
        except (TypeError, ValueError, OverflowError):  # None, nan, inf, a list, ...
            ok = False
        if not ok:
            raise CxrkitError(f"mask {name} must be a positive integer, got {value!r}")
        out.append(int(value))
    if out[0] * out[1] > MAX_PIXELS:
        raise CxrkitError(
            f"mask size {out[0]}x{out[1]} = {out[0] * out[1]} pixels is more than the {MAX_PIXELS} "
            "(16384 x 16384) a mask may have"
        )
    return out[0], out[1]
