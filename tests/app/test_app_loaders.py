"""app/loaders.py: the figure frames are cached on the files a run was read from (and its state),
not on the `Run` object, so re-reading an unchanged run costs nothing and any write shows.

Outside a Streamlit server st.cache_data keeps its entries in this process's memory, so the
loaders run here as plain functions; each test counts the calls that reach analysis.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from analysis import runs as R
from analysis.figures import compare, dynamics
from app import loaders
from tests.rundir_factory import make_run


@pytest.fixture
def computed(monkeypatch):
    """Names of the runs each analysis call behind the loaders below was made for, in order."""
    names: list[str] = []
    loss_ratio, run_curve = dynamics.loss_ratio_frame, compare.run_curve

    def count_loss_ratio(run):
        names.append(run.name)
        return loss_ratio(run)

    def count_run_curve(run, *settings):
        names.append(run.name)
        return run_curve(run, *settings)

    monkeypatch.setattr(dynamics, "loss_ratio_frame", count_loss_ratio)
    monkeypatch.setattr(compare, "run_curve", count_run_curve)
    loaders.loss_ratio_frame.clear()
    loaders.run_curve.clear()
    R.clear_cache()
    yield names
    loaders.loss_ratio_frame.clear()
    loaders.run_curve.clear()
    R.clear_cache()


def log_step(path, step: int) -> None:
    with open(path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "loss": 0.5, "kd": 0.5, "ce": 1.0, "ratio": 0.5}) + "\n")


def test_a_frame_is_computed_once_per_version_of_the_run_files(tmp_path, computed):
    path = make_run(tmp_path, "run", steps=5)
    first = loaders.loss_ratio_frame(R.load_run(path))
    R.clear_cache()  # a new Run object read from the same files
    again = loaders.loss_ratio_frame(R.load_run(path))
    assert computed == ["run"] and again.equals(first)

    log_step(path, 6)
    grown = loaders.loss_ratio_frame(R.load_run(path))
    assert computed == ["run", "run"]
    assert grown["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_a_training_run_gets_new_frames_as_it_writes(tmp_path, computed):
    """load_run reads a training run afresh every time; its frames are still computed once per write."""
    path = make_run(tmp_path, "live", steps=3, state="running")
    for _ in range(3):
        assert loaders.loss_ratio_frame(R.load_run(path))["step"].max() == 3
    log_step(path, 4)
    assert loaders.loss_ratio_frame(R.load_run(path))["step"].max() == 4
    assert computed == ["live", "live"]


def test_a_list_of_runs_is_computed_run_by_run(tmp_path, computed):
    """The Compare page's curves: each run's curve is cached on its own files, so a second look,
    a new write to one run or one more run in the comparison computes only what changed."""
    a, b, c = (make_run(tmp_path, n, steps=4) for n in "abc")
    for _ in range(2):
        loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.0)
    assert computed == ["a", "b"]
    loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.5)  # another setting: other curves
    assert computed == ["a", "b", "a", "b"]
    log_step(b, 5)
    curves = loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.0)
    assert computed == ["a", "b", "a", "b", "b"]
    assert curves.groupby("run")["step"].max().to_dict() == {"a": 4, "b": 5}
    loaders.loss_curves_frame(R.load_runs([a, b, c]), "kd", 0.0)  # one more run: only its curve
    assert computed == ["a", "b", "a", "b", "b", "c"]


def test_a_run_whose_process_died_is_recomputed_as_crashed(tmp_path, computed):
    child = subprocess.Popen(["sleep", "60"])
    try:
        path = make_run(tmp_path, "dies", steps=3, state="running", pid=child.pid)
        assert R.load_run(path).state == "running"
        loaders.loss_ratio_frame(R.load_run(path))
    finally:
        child.kill()
        child.wait()
    crashed = R.load_run(path)  # no file changed, only the state
    assert crashed.state == "crashed"
    loaders.loss_ratio_frame(crashed)
    assert computed == ["dies", "dies"]
