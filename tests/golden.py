"""Digests of what droplab computes, for the bit-identity test (tests/test_golden.py).

Run as a script, it trains a few runs and two quick studies on generated data through the CLI,
and prints one SHA-256 per result: the bytes of each run's ``metrics.csv``, and for each study the
numbers it stored (claims, tables, variants, and every stored run's key, job, summary, history and
probes), with what is not a result left out (wall times, versions, the machine's name).

The digests in ``golden.json`` were computed by the code as it stood before issue 11's
reorganisation (commit a52c105), and again, equal, after it. The numbers must not move when the
code is reorganised. (Issue 13 rewrote the two studies' digests, on purpose: the studies run
under the fair protocol and store claims of a new form and each run's per-image results; the
five training runs' digests did not move.) They may move only with a change that is
meant to change them (a new default, a fixed bug); then rewrite ``golden.json`` with
``python tests/golden.py --update`` in the same commit, and say why in its message.

Bit identity across machines: the test pins one thread, and asks MKL and ATen for their portable
code paths (``MKL_CBWR=COMPATIBLE``, ``ATEN_CPU_CAPABILITY=default``), so that the AMD EPYC and
Intel Xeon machines droplab is tested on take the same floating-point paths. Checked on a 2-core
AMD EPYC: with these pins the digests stay the same when MKL is limited to AVX2 or to SSE4.2
(``MKL_ENABLE_INSTRUCTIONS``) and when numba compiles for a generic CPU (``NUMBA_CPU_NAME=generic``);
without them, two of the runs and both studies move. On a 16-core Intel Xeon (Sapphire Rapids:
AVX-512, AMX) with torch 2.11.0, the pinned digests of six of the seven equal those recorded on the
AMD EPYC with torch 2.13.0; the seventh (Adam under a cosine schedule) differs there, and so does
Adam under a cosine schedule alone, while Adam at a constant rate and SGD under the cosine schedule
each match: the difference follows torch's version, not the processor. So ``golden.json`` records
the torch version its digests were taken with, and the test skips under another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden.json"

# The environment every golden computation runs in (see the module's docstring).
ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "default",
    "DNNL_MAX_CPU_ISA": "SSE41",
    "PYTHONHASHSEED": "0",
}

COMMON = ["--data-dir", "data", "--no-verify", "--val-size", "200"]
TRAINS = {
    # The lecture's run: DropoutMLPScratch, 256-256, p = 0.5, SGD lr 0.1, batch 256 (3 epochs here).
    "lecture": ["--epochs", "3"],
    "concise": ["--model", "concise", "--epochs", "2"],
    "reference": ["--dropout-impl", "reference", "--epochs", "2"],
    # The general MLP with most of what the trainer offers switched on.
    "mlp-everything": ["--model", "mlp", "--hidden", "64", "32", "--dropout", "0.3", "0.2", "--noise", "gaussian",
                       "--norm", "batch", "--momentum", "0.9", "--weight-decay", "1e-4", "--max-norm", "3",
                       "--schedule", "onecycle", "--augment", "2", "--epochs", "3", "--batch-size", "128"],
    "adam-cosine": ["--model", "mlp", "--hidden", "32", "--dropout", "0.1", "--noise", "dropconnect",
                    "--norm", "layer", "--optimizer", "adam", "--lr", "0.01", "--schedule", "cosine",
                    "--train-size", "500", "--epochs", "2", "--checkpoint-every", "3"],
}
STUDIES = {
    "headline": ["--quick", "--seeds", "2"],
    "ensemble": ["--quick", "--seeds", "1"],
}
NOT_RESULTS = {"seconds", "versions", "machine", "wall_seconds", "train_seconds", "droplab", "data"}
# A job's configuration is kept out too: its key (the record's file name, which is hashed) names
# it, and leaves out fields at their defaults, so that a new field with a default moves no digest.
CONFIGS = {"job", "config"}


def _drop(value):
    """``value`` without the fields that are not results (times, versions, names of machines) nor
    configurations (named by the records' keys)."""
    if isinstance(value, dict):
        return {k: _drop(v) for k, v in value.items() if k not in NOT_RESULTS | CONFIGS}
    if isinstance(value, list):
        return [_drop(v) for v in value]
    return value


def _sha(obj) -> str:
    if isinstance(obj, bytes):
        return hashlib.sha256(obj).hexdigest()
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def study_digest(out: Path) -> str:
    study = json.loads((out / "study.json").read_text())
    runs = {p.name: _drop(json.loads(p.read_text())) for p in sorted((out / "runs").glob("*.json"))}
    return _sha({"study": _drop({k: study[k] for k in ("claims", "tables", "variants", "seeds", "runs")}),
                 "runs": runs})


def compute(work: Path) -> dict[str, str]:
    """Train every golden run and study under ``work`` (in this process's environment)."""
    sys.path.insert(0, str(HERE))
    from conftest import write_dataset

    write_dataset(work / "data", n_train=1200, n_test=300)
    cli = [sys.executable, "-m", "droplab"]
    digests = {}
    for name, args in TRAINS.items():
        subprocess.run([*cli, "train", *COMMON, "--threads", "1", "--out", f"train-{name}", *args],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        digests[f"train {name}: metrics.csv"] = _sha((work / f"train-{name}" / "metrics.csv").read_bytes())
    for name, args in STUDIES.items():
        subprocess.run([*cli, "study", name, *COMMON, "--out", f"study-{name}", *args],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        digests[f"study {name}: stored results"] = study_digest(work / f"study-{name}")
    return digests


def run_pinned(work: Path) -> dict[str, str]:
    """:func:`compute` in a fresh interpreter with :data:`ENV` (the only way its variables take effect)."""
    env = {**os.environ, **ENV}
    out = subprocess.run([sys.executable, __file__, "--compute", str(work)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compute"]:
        print(json.dumps(compute(Path(sys.argv[2]))))
    elif sys.argv[1:] == ["--update"]:
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            record = {"torch": torch.__version__, "digests": run_pinned(Path(tmp))}
            GOLDEN.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN}")
    else:
        sys.exit("usage: python tests/golden.py --update   (rewrites tests/golden.json; see the docstring)")
