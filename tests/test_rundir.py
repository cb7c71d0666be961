import fcntl
import json
import os
from pathlib import Path

import pytest
import torch

from droplab.atomic import atomic_write, load_weights, save_weights, write_csv, write_json
from droplab.rundir import (
    DirectoryBusy,
    DirectoryNotEmpty,
    DirectoryOwned,
    DirectoryUnusable,
    RunDirError,
    claim_dir,
    claimed,
    new_run_dir,
)


def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"a": 1})

    def explode(f):
        f.write(b"{half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_files_get_normal_permissions(tmp_path):
    path = write_json(tmp_path / "x.json", {})
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_json_has_no_nan(tmp_path):
    path = write_json(tmp_path / "x.json", {"v": float("nan"), "w": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"v": None, "w": [1.0, None]}


def test_csv_floats_roundtrip_exactly(tmp_path):
    value = 0.1 + 0.2
    path = write_csv(tmp_path / "m.csv", ["epoch", "loss"], [{"epoch": 1, "loss": value}])
    assert path.read_text().splitlines() == ["epoch,loss", f"1,{value!r}"]
    assert float(path.read_text().splitlines()[1].split(",")[1]) == value


def test_weights_roundtrip(tmp_path):
    state = {"w": torch.randn(3, 4)}
    save_weights(tmp_path / "model.pt", state)
    assert torch.equal(load_weights(tmp_path / "model.pt")["w"], state["w"])


def test_claim_refuses_used_directory_and_second_claim(tmp_path):
    run = claim_dir(tmp_path / "run")
    with pytest.raises(DirectoryBusy, match="is in use by another droplab process"):
        claim_dir(run)
    (run / "metrics.csv").write_text("x")
    with pytest.raises(DirectoryNotEmpty, match="already holds results; droplab never overwrites a run") as err:
        claim_dir(run)
    assert err.value.directory == run and "--" not in str(err.value)
    stale = tmp_path / "stale"  # a run killed right after its claim: only an unlocked marker
    stale.mkdir()
    (stale / ".droplab").write_text("pid 1 started\n")
    assert claim_dir(stale) == stale
    existing_empty = tmp_path / "empty"
    existing_empty.mkdir()
    assert claim_dir(existing_empty) == existing_empty
    (tmp_path / "file").write_text("x")
    with pytest.raises(DirectoryUnusable, match="it exists and is not a directory"):
        claim_dir(tmp_path / "file")


def test_unwritable_location(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/droplab-cannot-exist"  # even root cannot create directories here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    with pytest.raises(DirectoryUnusable, match="as an output directory: cannot create it") as err:
        claim_dir(target)
    assert isinstance(err.value, RunDirError) and err.value.directory == Path(target)


def test_new_run_dirs_are_distinct(tmp_path):
    a = new_run_dir(tmp_path, "scratch")
    b = new_run_dir(tmp_path, "scratch")
    assert a != b and a.name.startswith("scratch-") and b.exists()


def test_a_study_claims_its_directory_again_and_no_other_study_does(tmp_path):
    out = tmp_path / "study"
    with claimed(out, "study", "headline") as held:
        assert (held / ".droplab-study").read_text() == "headline\n"
        with pytest.raises(DirectoryBusy, match="is in use by another droplab process"):
            claim_dir(out, "study", "headline")
        (held / "study.json").write_text("{}")
    with claimed(out, "study", "headline"):  # released: the same study goes on in it, files and all
        pass
    with pytest.raises(DirectoryOwned, match="holds results of study 'headline', not 'noise'") as err:
        claim_dir(out, "study", "noise")
    assert (err.value.owner, err.value.wanted) == ("headline", "noise")
    fd = os.open(out / ".droplab-study", os.O_RDONLY)  # as a running study of another droplab holds it
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(DirectoryBusy):
            claim_dir(out, "study", "headline")
    finally:
        os.close(fd)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    with pytest.raises(DirectoryNotEmpty, match="droplab never overwrites a study"):
        claim_dir(tmp_path / "notes", "study", "headline")
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / ".droplab-study").write_text("")  # a claim killed before it wrote its owner
    with claimed(tmp_path / "killed", "study", "headline") as held:
        assert (held / ".droplab-study").read_text() == "headline\n"
    with pytest.raises(ValueError, match="expected kind 'run' without an owner"):
        claim_dir(tmp_path / "x", "study")


def test_files_are_written_with_droplab_atomic_not_through_rundir():
    """droplab.atomic writes and reads the files; rundir claims directories and offers none of atomic's functions."""
    import ast

    import droplab
    from droplab import atomic, rundir

    src = Path(droplab.__file__).parent
    found = []
    for path in [*src.rglob("*.py"), *Path(__file__).parent.glob("*.py")]:
        where = str(path.relative_to(src if src in path.parents else path.parent))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rundir":
                found += [f"{where}:{node.lineno}: rundir.{node.attr}"] if node.attr in atomic.__all__ else []
            elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith("rundir"):
                found += [f"{where}:{node.lineno}: {a.name}" for a in node.names if a.name in atomic.__all__]
    assert not found and not set(rundir.__all__) & set(atomic.__all__)
