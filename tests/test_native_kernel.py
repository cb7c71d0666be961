"""The CPU kernels' backends: C (kernels/native.py) and numba (kernels/numba_cpu.py), the same bits.

Each backend is checked against the numpy specification (kernels/counter.py) and against the
composed torch operations; the C kernel's build cache, its concurrency and its fallback to numba
run in fresh subprocesses with their own cache directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab.functional import seeded_dropout
from droplab.kernels import counter, cpu, native

SIZES = [0, 1, 1023, 1024, 1025, 3 * 1024 + 5, 4 * cpu.PARALLEL_MIN + 77]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture
def needs_native() -> None:
    if native.unavailable_reason() is not None:
        why = f"the C kernel cannot be built here: {native.unavailable_reason()}"
        if os.environ.get("DROPLAB_REQUIRE_NATIVE"):  # set by .ci/run: CI has a compiler, so this is a defect
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(params=["native", "numba"])
def backend(request, monkeypatch):
    """Every call of droplab.kernels.cpu (and of droplab.functional) computed by one backend."""
    if request.param == "native":
        request.getfixturevalue("needs_native")
        module = native
    else:
        from droplab.kernels import numba_cpu as module
    monkeypatch.setattr(cpu, "_impl", module)
    return request.param


def reference(x: torch.Tensor, seed: int, p: float) -> torch.Tensor:
    mask = torch.from_numpy(counter.keep_mask(seed, x.numel(), p)).reshape(x.shape).to(x.dtype)
    return mask * x / (1.0 - p)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dropout_is_the_specified_mask(backend, dtype, n):
    x = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(n))
    for seed, p in ((0, 0.5), (-1 & counter.MASK64, 0.1), (2**62 + 12345, 0.77), (7, 0.999)):
        want = reference(x, seed, p)
        out = torch.empty_like(x)
        cpu.dropout_into(x, out, seed, p, 2)
        assert torch.equal(out, want), (seed, p)
        inplace = x.clone()
        cpu.dropout_into(inplace, inplace, seed, p, 2)
        assert torch.equal(inplace, want), (seed, p)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_draw_equal_to_the_threshold_is_kept(backend, dtype):
    """u >= threshold, not u > threshold: p is chosen so that an element's draw is the threshold."""
    n, seed = 3000, 4
    draws = counter.draws(seed, n)
    x = torch.ones(n, dtype=dtype)
    for k in (0, 511, 512, 1023, 1024, 2999):  # low and high halves, across blocks, the partial block
        p = int(draws[k]) / 2.0**32
        assert counter.threshold(p) == draws[k]
        out = torch.empty_like(x)
        cpu.dropout_into(x, out, seed, p, 1)
        assert out[k] != 0 and torch.equal(out, reference(x, seed, p)), k
        h = x.clone()
        cpu.relu_dropout_(h, seed, p, 1)
        assert h[k] != 0, k


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_like_the_formula(backend, dtype):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, -1.5, 2.0, 1e-40] * 300, dtype=dtype)
    out = torch.empty_like(x)
    cpu.dropout_into(x, out, 3, 0.5, 1)
    torch.testing.assert_close(out, reference(x, 3, 0.5), equal_nan=True, rtol=0, atol=0)


def special_values(n: int, dtype: torch.dtype) -> torch.Tensor:
    """Normal values with negatives, zeros, NaN and infinities sprinkled in."""
    h = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(n + 1))
    specials = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -float("inf"), -3.0], dtype=dtype)
    h[::7] = specials.repeat(n // 7 // 6 + 1)[: h[::7].numel()]
    return h


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_relu_dropout_is_relu_then_dropout(backend, dtype, n):
    h = special_values(n, dtype)
    for seed, p in ((5, 0.5), (2**63 + 9, 0.2)):
        want = seeded_dropout(torch.relu(h), p, seed)  # droplab's dropout, the same backend
        fused = h.clone()
        cpu.relu_dropout_(fused, seed, p, 2)
        assert torch.equal(fused.isnan(), want.isnan()), (seed, p)
        assert torch.equal(fused.nan_to_num(), want.nan_to_num()), (seed, p)  # equal up to the sign of zero


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 1025, 4 * cpu.PARALLEL_MIN + 77])
def test_relu_dropout_backward_is_the_composed_gradient(backend, dtype, n):
    h = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(n))
    h[::5] = 0.0
    h.requires_grad_()
    seed, p = 11, 0.3
    composed = seeded_dropout(torch.relu(h), p, seed)
    g = torch.randn(2 * n, dtype=dtype)[::2]  # non-contiguous
    composed.backward(g)
    out = h.detach().clone()
    cpu.relu_dropout_(out, seed, p, 2)
    gin = cpu.relu_dropout_backward(g, out, p, 2)
    assert gin.is_contiguous() and gin.shape == h.shape and gin.dtype == dtype
    assert torch.equal(gin, h.grad)


def test_a_parallel_kernel_call_leaves_torchs_thread_count_alone(backend):
    # a kernel opening a 2-thread region (omp_set_num_threads would also set torch's count)
    x, before = torch.randn(4 * cpu.PARALLEL_MIN), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = torch.empty_like(x)
        cpu._impl.dropout(x.data_ptr(), out.data_ptr(), x.numel(), 5, 0.5, x.dtype, 2)
        cpu._impl.relu_dropout(out.data_ptr(), x.numel(), 5, 0.5, x.dtype, 2)
        cpu._impl.relu_dropout_backward(x.data_ptr(), out.data_ptr(), x.data_ptr(), x.numel(), 0.5, x.dtype, 2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.usefixtures("needs_native")
@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_native_result_does_not_depend_on_threads(threads):
    n = 9 * cpu.PARALLEL_MIN + 333  # blocks do not split evenly over 2, 3 or 7 threads
    x = torch.randn(n, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    functions = native._functions[torch.float32]
    thr, keep = native._constants(0.4)
    one, many = torch.empty_like(x), torch.empty_like(x)
    functions[0](x.data_ptr(), one.data_ptr(), n, 99, thr, keep, 1)
    functions[0](x.data_ptr(), many.data_ptr(), n, 99, thr, keep, threads)
    assert torch.equal(one, many)
    a, b = x.clone(), x.clone()
    functions[1](a.data_ptr(), n, 99, thr, keep, 1)
    functions[1](b.data_ptr(), n, 99, thr, keep, threads)
    assert torch.equal(a, b)
    g1, g2 = torch.empty_like(x), torch.empty_like(x)
    functions[2](x.data_ptr(), a.data_ptr(), g1.data_ptr(), n, keep, 1)
    functions[2](x.data_ptr(), a.data_ptr(), g2.data_ptr(), n, keep, threads)
    assert torch.equal(g1, g2)


def test_refusals():
    x = torch.randn(10)
    with pytest.raises(TypeError, match="float32 or float64, got torch.float16"):
        cpu.dropout_into(x.half(), x.half(), 1, 0.5, 1)
    with pytest.raises(ValueError, match="contiguous CPU tensors"):
        cpu.dropout_into(x, torch.empty(11), 1, 0.5, 1)
    with pytest.raises(ValueError, match="contiguous CPU tensors"):
        cpu.relu_dropout_(torch.randn(4, 4).t(), 1, 0.5, 1)
    with pytest.raises(ValueError, match="contiguous CPU tensors"):
        cpu.relu_dropout_backward(x.double(), x, 0.5, 1)
    for p in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match=r"needs 0 < p < 1"):
            cpu.relu_dropout_(x, 1, p, 1)


# --- the build cache and the choice of backend, in fresh processes -----------------------------

PROBE = textwrap.dedent(
    """
    import json, sys, torch
    from droplab.functional import seeded_dropout
    from droplab.kernels import counter, cpu, native
    x = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    y = seeded_dropout(x, 0.3, 17)
    mask = torch.from_numpy(counter.keep_mask(17, 5000, 0.3))
    print(json.dumps(dict(backend=cpu.backend(), builds=native.builds, reason=cpu.native_unavailable_reason(),
                          right=torch.equal(y, mask * x / 0.7), numba="numba" in sys.modules)))
    """
)


def probe(cache: Path, **env: str) -> subprocess.Popen:
    full = {**os.environ, "DROPLAB_CACHE_DIR": str(cache), **env}
    return subprocess.Popen([sys.executable, "-c", PROBE], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def answer(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.usefixtures("needs_native")
def test_built_once_then_loaded_from_the_cache_without_numba(tmp_path):
    first = answer(probe(tmp_path))
    assert first == dict(backend="native", builds=1, reason=None, right=True, numba=False)
    (so,) = tmp_path.glob("droplab-native-*.so")
    stamp = so.stat().st_mtime_ns
    second = answer(probe(tmp_path))
    assert second == dict(backend="native", builds=0, reason=None, right=True, numba=False)
    assert so.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".build-*"))  # no temporary file left behind


@pytest.mark.usefixtures("needs_native")
def test_a_truncated_library_is_rebuilt(tmp_path):
    answer(probe(tmp_path))
    (so,) = tmp_path.glob("droplab-native-*.so")
    size = so.stat().st_size
    with open(so, "r+b") as f:
        f.truncate(size // 2)
    again = answer(probe(tmp_path))
    assert again == dict(backend="native", builds=1, reason=None, right=True, numba=False)
    assert so.stat().st_size == size


@pytest.mark.usefixtures("needs_native")
def test_processes_building_at_once_all_succeed(tmp_path):
    procs = [probe(tmp_path) for _ in range(3)]
    for proc in procs:
        assert answer(proc) | {"builds": None} == dict(backend="native", builds=None, reason=None, right=True,
                                                       numba=False)
    assert len(list(tmp_path.glob("droplab-native-*.so"))) == 1
    assert not list(tmp_path.glob(".build-*"))


@pytest.mark.usefixtures("needs_native")
def test_a_cache_that_cannot_take_the_kernel_falls_back_to_numba(tmp_path, monkeypatch):
    monkeypatch.setenv("DROPLAB_CACHE_DIR", str(tmp_path))
    native.library_path().with_suffix(".sha256").mkdir()  # the digest's rename fails (IsADirectoryError)
    got = answer(probe(tmp_path))
    assert (got["backend"], got["right"], got["numba"]) == ("numba", True, True)
    assert got["reason"].startswith(f"cannot write the kernel to the cache directory {tmp_path}")
    assert not list(tmp_path.glob(".build-*"))


@pytest.mark.usefixtures("needs_native")
def test_a_built_kernel_can_be_shared(tmp_path):
    answer(probe(tmp_path))
    (so,) = tmp_path.glob("droplab-native-*.so")
    assert so.stat().st_mode & 0o777 == 0o755 and so.with_suffix(".sha256").stat().st_mode & 0o777 == 0o644


def test_numba_when_asked(tmp_path):
    got = answer(probe(tmp_path, DROPLAB_CPU_KERNEL="numba"))
    assert got == dict(backend="numba", builds=0, reason="DROPLAB_CPU_KERNEL = 'numba'", right=True, numba=True)
    assert not list(tmp_path.glob("droplab-native-*"))


def test_no_compiler_falls_back_to_numba_with_the_reason(tmp_path):
    got = answer(probe(tmp_path, CC="/nonexistent/cc"))
    assert (got["backend"], got["right"], got["numba"]) == ("numba", True, True)
    assert got["reason"] == "CC = '/nonexistent/cc' is not an executable"


def test_a_failing_compiler_falls_back_to_numba_with_its_message(tmp_path):
    got = answer(probe(tmp_path, CC="false"))
    assert (got["backend"], got["right"]) == ("numba", True)
    assert got["reason"].startswith("false failed on native.c (exit 1)")


@pytest.mark.usefixtures("needs_native")
def test_native_when_asked(tmp_path):
    assert answer(probe(tmp_path, DROPLAB_CPU_KERNEL="native"))["backend"] == "native"


def test_native_when_asked_and_impossible_is_an_error_naming_why(tmp_path):
    proc = probe(tmp_path, DROPLAB_CPU_KERNEL="native", CC="/nonexistent/cc")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "NativeUnavailable: CC = '/nonexistent/cc' is not an executable" in err


def test_a_bad_choice_is_refused_naming_the_choices(tmp_path):
    proc = probe(tmp_path, DROPLAB_CPU_KERNEL="fast")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "KernelChoiceError: DROPLAB_CPU_KERNEL = 'fast' is invalid: expected one of auto, native, numba" in err


def test_the_cli_refuses_a_bad_choice_before_any_work(tmp_path):
    env = {**os.environ, "DROPLAB_CPU_KERNEL": "fast"}
    proc = subprocess.run([sys.executable, "-m", "droplab", "train", "--out", str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train: error: DROPLAB_CPU_KERNEL = 'fast' is invalid: expected one of auto, native, numba" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_cache_directory_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DROPLAB_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native.cache_dir() == tmp_path / "xdg" / "droplab"
    monkeypatch.setenv("DROPLAB_CACHE_DIR", str(tmp_path / "mine"))
    assert native.cache_dir() == tmp_path / "mine"
    assert native.library_path().parent == tmp_path / "mine"
    assert np.all(np.asarray(native.FLAGS) != "-ffast-math")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_all_finite_finds_every_nan_and_infinity(backend, dtype):
    info = torch.finfo(dtype)
    for n in (1, 7, 1024, 4099):
        x = torch.linspace(-1, 1, n, dtype=dtype)
        assert cpu.all_finite([x])
        for at in {0, n // 2, n - 1}:
            for bad in (float("nan"), float("inf"), -float("inf")):
                y = x.clone()
                y[at] = bad
                assert not cpu.all_finite([x, y]), (n, at, bad)
                assert not cpu.all_finite([y.view(-1, 1).expand(n, 2).t()])  # not contiguous
    edge = torch.tensor([info.max, -info.max, info.tiny, info.tiny / 2, 0.0, -0.0], dtype=dtype)
    assert cpu.all_finite([edge, edge.repeat(1000)])  # their sum overflows, each value is finite
    assert cpu.all_finite([])
