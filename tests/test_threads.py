"""Thread counts: droplab.threads.use_threads, and no kernel call changing torch's count.

Thread settings are process-wide (and numba's pool starts once per process), so every check
that sets them runs in a fresh subprocess, once per CPU kernel backend (C and its numba
fallback); this test process is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from droplab.threads import usable_cores, use_threads

SCRIPT = textwrap.dedent(
    """
    import hashlib, json, torch
    torch.set_num_threads(1)
    torch.ones(4) @ torch.ones(4)  # torch's per-thread start-up done, as in a run before its first dropout
    from droplab import functional
    from droplab.kernels import cpu
    from droplab.threads import use_threads

    chunks = []  # the thread count each kernel call ran with (the backend's last argument)
    backend = cpu._backend()
    real = backend.dropout
    def spy(*args):
        chunks.append(int(args[-1]))
        return real(*args)
    backend.dropout = spy
    def pool():  # numba's thread count; the C kernel has none to keep (its regions are sized per call)
        if backend.NAME != "numba":
            return None
        import numba
        return numba.get_num_threads()

    x = torch.randn(4 * cpu.PARALLEL_MIN)  # above PARALLEL_MIN: the parallel path
    def drop():
        torch.manual_seed(0)
        return functional.dropout(x, 0.5)

    out = {"backend": cpu.backend()}
    drop()
    out["plain"] = dict(torch=torch.get_num_threads(), chunks=chunks[-1])
    for n in (1, 2, 4096):
        used, note = use_threads(n)
        y = drop()
        out[str(n)] = dict(used=used, note=note, torch=torch.get_num_threads(), chunks=chunks[-1],
                           pool=pool(), digest=hashlib.sha256(y.numpy().tobytes()).hexdigest())
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module", params=["native", "numba"])
def runs(request) -> dict:
    env = {**os.environ, "DROPLAB_CPU_KERNEL": request.param}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    if request.param == "native" and "NativeUnavailable" in proc.stderr:
        why = f"the C kernel cannot be built here: {proc.stderr.strip().splitlines()[-1]}"
        if os.environ.get("DROPLAB_REQUIRE_NATIVE"):  # set by .ci/run: CI has a compiler
            pytest.fail(why)
        pytest.skip(why)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("backend") == request.param
    pools = {n: out[n].pop("pool") for n in ("1", "2", "4096")}
    if request.param == "numba":  # numba's own count follows the kernel's
        assert pools == {n: out[n]["chunks"] for n in pools}
    return out


def test_kernel_call_does_not_change_torch_threads(runs):
    # the bug: starting numba's OpenMP pool set torch's count to the pool size (the C kernel's
    # regions run on the same libgomp as torch's, sized by their num_threads clause only)
    assert runs["plain"] == {"torch": 1, "chunks": 1}


def test_one_thread_for_torch_and_kernel(runs):
    r = runs["1"]
    assert (r["used"], r["note"], r["torch"], r["chunks"]) == (1, None, 1, 1)


@pytest.mark.skipif(usable_cores() < 2, reason="comparing 1 and 2 threads needs a process allowed on 2 cores or more")
def test_two_threads_for_torch_and_kernel_same_result(runs):
    r = runs["2"]
    assert (r["used"], r["note"], r["torch"], r["chunks"]) == (2, None, 2, 2)
    assert r["digest"] == runs["1"]["digest"]  # bit for bit (not a torch sum: its order follows threads)


def test_too_many_threads_capped_with_note(runs):
    r, cores = runs["4096"], usable_cores()
    assert r["used"] == r["torch"] == r["chunks"] == cores
    assert r["note"].startswith(f"threads 4096 capped at the {cores} core")
    assert r["digest"] == runs["1"]["digest"]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, 2.0])
def test_bad_values_refused(bad):
    # refused before anything is set, so this process is not touched
    with pytest.raises(ValueError, match=r"threads = .* is invalid: expected an integer >= 1"):
        use_threads(bad)


def test_docstring_examples():
    code = "import doctest, droplab.threads as m; r = doctest.testmod(m); assert r.attempted and not r.failed, r"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
