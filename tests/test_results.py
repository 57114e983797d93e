import json
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.results import current_commit, load_results, provenance_text, results_dir, save_results


def test_round_trip_with_provenance(tmp_path):
    data = {"acc": torch.tensor([0.5, 0.25]), "n": np.int64(3), "grid": np.arange(3)}
    path = save_results("demo", data, command="python bench.py", seeds=[0, 1, 2], root=tmp_path)
    assert path == tmp_path / "demo.json"
    record = load_results("demo", root=tmp_path)
    assert record["data"] == {"acc": [0.5, 0.25], "n": 3, "grid": [0, 1, 2]}
    assert record["command"] == "python bench.py"
    assert record["provenance"]["seeds"] == [0, 1, 2]
    assert record["provenance"]["torch"] == torch.__version__
    text = provenance_text(record)
    flat = " ".join(text.split())
    assert "python bench.py" in flat and "demo.json" in flat and "[0, 1, 2]" in flat
    assert max(len(line) for line in text.splitlines()) <= 76


def test_commit_recorded_now_or_as_given(tmp_path):
    save_results("now", {}, command="c", root=tmp_path)
    assert load_results("now", root=tmp_path)["provenance"]["commit"] == current_commit()
    save_results("then", {}, command="c", root=tmp_path, commit="03432f2")
    assert load_results("then", root=tmp_path)["provenance"]["commit"] == "03432f2"
    for bad in ("", "HEAD", "03432f2 ", "xyz1234", 3):
        with pytest.raises(ValueError, match="commit"):
            save_results("bad", {}, command="c", root=tmp_path, commit=bad)


@pytest.mark.parametrize("name", ["", "Bad", "a/b", "../x", 3])
def test_bad_name(name, tmp_path):
    with pytest.raises(ValueError, match="name"):
        save_results(name, {}, command="x", root=tmp_path)


def test_bad_command_and_data(tmp_path):
    with pytest.raises(ValueError, match="command"):
        save_results("x", {}, command=" ", root=tmp_path)
    with pytest.raises(TypeError, match="data"):
        save_results("x", [1], command="c", root=tmp_path)


def test_missing_and_incomplete_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_results("nope", root=tmp_path)
    (tmp_path / "old.json").write_text(json.dumps({"data": {}}))
    with pytest.raises(ValueError, match="command"):
        load_results("old", root=tmp_path)


def test_every_committed_results_file_loads_and_names_its_command():
    files = sorted(results_dir().glob("*.json"))
    for path in files:
        record = load_results(path.stem)
        assert record["command"].strip(), path
        assert record["name"] == path.stem, path


def test_every_committed_command_names_a_script_that_exists():
    import importlib.util
    import shlex

    for path in sorted(results_dir().glob("*.json")):
        words = shlex.split(load_results(path.stem)["command"])
        scripts = [w for w in words if w.endswith((".py", ".ipynb"))]
        modules = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-m"]
        assert scripts or modules or "make" in words, f"{path.name}: {words}"
        for script in scripts:
            assert (results_dir().parent / script).is_file(), f"{path.name}: no {script}"
        for module in modules:
            assert importlib.util.find_spec(module) is not None, f"{path.name}: no {module}"


def test_rerun_commands_runs_each_recorded_command(tmp_path):
    from utils.results import rerun_commands

    marker = tmp_path / "ran.txt"
    save_results("a", {}, command=f"echo a >> {marker}", root=tmp_path)
    save_results("b", {}, command=f"echo b >> {marker}", root=tmp_path)
    assert [n for n, _ in rerun_commands(root=tmp_path, dry_run=True)] == ["a", "b"]
    assert not marker.exists()
    rerun_commands(["b"], root=tmp_path)
    assert marker.read_text() == "b\n"
