"""Counter-based dropout masks: the keep bit of element i is a hash of (seed, i, p).

``counter`` states the hash in plain numpy (the specification); ``cpu`` checks and dispatches
to ``native`` (C, compiled on first use) or its fallback ``numba_cpu``; ``cuda`` (Triton)
computes the same bits on the GPU. Nothing here keeps state: a mask is
regenerated from its seed whenever it is needed, so backward stores no mask.
"""
