"""The mask of droplab's fast dropout, specified in numpy: slow, plain, and the reference
that the CPU and CUDA kernels are tested against.

SplitMix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number generators",
OOPSLA 2014) used as a counter-based generator, as in Salmon et al., "Parallel random
numbers: as easy as 1, 2, 3" (SC 2011): the random word for counter j is
``mix(seed + (j + 1) * GOLDEN)`` with no state carried between elements.

Layout: elements are grouped in blocks of ``2 * HALF``. In block b, the element at
offset k < HALF takes the low 32 bits of the word for counter ``j = b * HALF + k``;
the element at offset HALF + k takes its high 32 bits. An element is kept when its
32-bit draw ``u`` satisfies ``u >= threshold(p)``, so P(keep) = 1 - threshold / 2**32,
within 2**-32 of 1 - p. The bits depend on (seed, i, p) only: not on the shape, the
number of threads or the device.
"""

from __future__ import annotations

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
HALF = 512  # a block is 1024 elements: two contiguous halves fed by one 64-bit word each
MASK64 = (1 << 64) - 1


def threshold(p: float) -> int:
    """The 32-bit cut: drop when u < threshold. For p in (0, 1)."""
    return min(int(round(p * 2.0**32)), 2**32 - 1)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 (wrapping arithmetic)."""
    z = z.astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def draws(seed: int, n: int) -> np.ndarray:
    """The 32-bit draw u of elements 0..n-1 (uint32)."""
    i = np.arange(n, dtype=np.uint64)
    block, offset = i // np.uint64(2 * HALF), i % np.uint64(2 * HALF)
    high = offset >= np.uint64(HALF)
    j = block * np.uint64(HALF) + np.where(high, offset - np.uint64(HALF), offset)
    with np.errstate(over="ignore"):
        word = mix(np.uint64(seed & MASK64) + (j + np.uint64(1)) * np.uint64(GOLDEN))
    return np.where(high, word >> np.uint64(32), word & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def keep_mask(seed: int, n: int, p: float) -> np.ndarray:
    """Boolean keep-mask of elements 0..n-1 for dropout probability p in (0, 1).

    Examples::

        The specification and the compiled kernel, for one seed:

        >>> import torch
        >>> from droplab.functional import seeded_dropout
        >>> from droplab.kernels.counter import keep_mask
        >>> keep_mask(seed=7, n=8, p=0.5)
        array([False,  True,  True, False, False,  True, False, False])
        >>> seeded_dropout(torch.ones(8), 0.5, seed=7)
        tensor([0., 2., 2., 0., 0., 2., 0., 0.])
    """
    return draws(seed, n) >= np.uint32(threshold(p))
