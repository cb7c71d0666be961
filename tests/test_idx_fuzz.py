"""Fuzzing the IDX reader with hypothesis: random bytes and mutated valid files, gzipped or not.

Whatever the input, ``read_idx`` returns an array the size its header claims or raises
``DataError``: no other exception, no hang (a per-input deadline), and no allocation beyond
what the file really holds (tracemalloc's peak, bounded by the decompressed size plus a
constant, even when the header claims 256 MiB).

In the suite it runs a few hundred inputs, derandomized (the same inputs every run). For a
longer campaign that counts the outcomes::

    python tests/test_idx_fuzz.py --examples 20000
"""

from __future__ import annotations

import argparse
import collections
import gzip
import math
import struct
import sys
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from droplab.data import DataError, read_idx

SLACK = 1 << 20  # bytes a read may allocate beyond the data it holds (chunks, gzip's buffers)
OUTCOMES = [  # DataError messages, by kind
    ("not an IDX file", "too short for the magic"),
    ("wrong magic number", "wrong magic number"),
    ("dimensions, expected", "wrong number of dimensions"),
    ("truncated header", "truncated header"),
    ("over the limit", "header claims more than the limit"),
    (": truncated:", "data shorter than the header claims"),
    ("trailing bytes", "data longer than the header claims"),
    ("damaged gzip stream", "damaged or not gzip"),
]


def classify(err: DataError) -> str:
    return next((kind for text, kind in OUTCOMES if text in str(err)), "other DataError: " + str(err)[:60])


@st.composite
def idx_inputs(draw) -> tuple[bytes, int]:
    """(file bytes, ndim asked for): a valid IDX file, mutated, compressed (or not), mutated again."""
    ndim = draw(st.sampled_from([1, 3]))
    if ndim == 1:
        shape = (draw(st.integers(0, 64)),)
    else:
        shape = tuple(draw(st.integers(0, 8)) for _ in range(3))
    data = draw(st.binary(min_size=math.prod(shape), max_size=math.prod(shape)))
    raw = bytearray(struct.pack(">HBB", 0, 0x08, ndim) + struct.pack(f">{ndim}I", *shape) + data)
    for op, pos, value in draw(
        st.lists(
            st.tuples(
                st.sampled_from(["flip", "byte", "size", "truncate", "append", "insert", "delete"]),
                st.integers(0, 1 << 20),
                st.integers(0, 2**32 - 1),
            ),
            max_size=3,
        )
    ):
        at = pos % (len(raw) + 1)
        if op == "flip" and raw:
            raw[at % len(raw)] ^= 1 << (value % 8)
        elif op == "byte" and raw:
            raw[at % len(raw)] = value & 0xFF
        elif op == "size" and len(raw) >= 8:  # a header field (a dimension) set to anything, up to 2^32 - 1
            field = 4 + 4 * (value % max(1, (min(len(raw), 4 + 4 * ndim) - 4) // 4))
            raw[field : field + 4] = struct.pack(">I", value)
        elif op == "truncate":
            del raw[at:]
        elif op == "append":
            raw += bytes(value % 300)
        elif op == "insert":
            raw[at:at] = bytes([value & 0xFF]) * (1 + value % 5)
        elif op == "delete":
            del raw[at : at + 1 + value % 5]
    packing = draw(st.sampled_from(["gzip", "gzip", "gzip-damaged", "raw"]))
    if packing == "raw":
        return bytes(raw), draw(st.sampled_from([ndim, ndim, 4 - ndim]))
    packed = bytearray(gzip.compress(bytes(raw), mtime=0))
    if packing == "gzip-damaged":
        cut = draw(st.integers(0, len(packed)))
        if draw(st.booleans()):
            del packed[cut:]
        elif packed:
            packed[cut % len(packed)] ^= draw(st.integers(1, 255))
    return bytes(packed), draw(st.sampled_from([ndim, ndim, 4 - ndim]))


random_bytes = st.binary(max_size=2048).map(lambda b: (b, 1)) | st.binary(max_size=2048).map(
    lambda b: (gzip.compress(b, mtime=0), 3)
)


def decompressed_size(blob: bytes) -> int:
    """What the file really holds once decompressed (0 when it is not gzip at all)."""
    try:
        out = zlib.decompressobj(wbits=31)
        return len(out.decompress(blob, 1 << 29))
    except zlib.error:
        return 0


def check_one(blob: bytes, ndim: int, path: Path, counts: collections.Counter | None = None) -> None:
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        array = read_idx(path, ndim)
        outcome = "read"
    except DataError as err:
        array, outcome = None, classify(err)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if counts is not None:
        counts[outcome] += 1
    assert not outcome.startswith("other"), outcome
    if array is not None:
        assert array.dtype == np.uint8 and array.ndim == ndim
        header = struct.unpack(f">{ndim}I", gzip.decompress(blob)[4 : 4 + 4 * ndim])
        assert array.shape == header
    assert peak <= decompressed_size(blob) + SLACK, f"peak {peak} bytes for a {len(blob)}-byte file"


_dir = Path(tempfile.mkdtemp(prefix="droplab-fuzz-"))
COUNTS: collections.Counter = collections.Counter()
FUZZ_SETTINGS = dict(
    deadline=2000,  # ms per input: a hang fails
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@settings(max_examples=400, **FUZZ_SETTINGS)
@given(idx_inputs() | random_bytes)
def test_read_idx_fails_only_with_data_error(case):
    check_one(*case, _dir / "f.gz", COUNTS)


def test_a_header_claiming_256_mib_allocates_nothing_like_it(tmp_path):
    blob = gzip.compress(struct.pack(">HBBIII", 0, 0x08, 3, 4096, 256, 255) + bytes(1000))
    check_one(blob, 3, tmp_path / "f.gz")  # the peak bound is the assertion: about 1 KB of data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args(argv)
    counts: collections.Counter = collections.Counter()

    @settings(max_examples=args.examples, **FUZZ_SETTINGS)
    @given(idx_inputs() | random_bytes)
    def campaign(case):
        check_one(*case, _dir / "f.gz", counts)

    campaign()
    total = sum(counts.values())
    print(f"read_idx fuzzed: {total} executions (hypothesis, derandomized), outcomes:")
    for outcome, n in counts.most_common():
        print(f"  {n:6d}  {outcome}")
    others = {o for o in counts if o.startswith("other")}
    print("every failure a DataError of a known kind" if not others else f"UNCLASSIFIED: {others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
