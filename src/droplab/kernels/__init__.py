"""Counter-based dropout masks: the keep bit of element i is a hash of (seed, i, p).

``counter`` states the hash in plain numpy (the specification); ``cpu`` (numba) and
``cuda`` (Triton) compute the same bits fast. Nothing here keeps state: a mask is
regenerated from its seed whenever it is needed, so backward stores no mask.
"""
