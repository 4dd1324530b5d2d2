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
    loss_ratio, loss_curves = dynamics.loss_ratio_frame, compare.loss_curves_frame

    def count_loss_ratio(run):
        names.append(run.name)
        return loss_ratio(run)

    def count_loss_curves(runs, **settings):
        names.append("+".join(r.name for r in runs))
        return loss_curves(runs, **settings)

    monkeypatch.setattr(dynamics, "loss_ratio_frame", count_loss_ratio)
    monkeypatch.setattr(compare, "loss_curves_frame", count_loss_curves)
    loaders.loss_ratio_frame.clear()
    loaders.loss_curves_frame.clear()
    R.clear_cache()
    yield names
    loaders.loss_ratio_frame.clear()
    loaders.loss_curves_frame.clear()
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


def test_a_list_of_runs_is_keyed_on_each_run(tmp_path, computed):
    a, b = make_run(tmp_path, "a", steps=4), make_run(tmp_path, "b", steps=4)
    for _ in range(2):
        loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.0)
    loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.5)  # another setting: another frame
    log_step(b, 5)
    curves = loaders.loss_curves_frame(R.load_runs([a, b]), "kd", 0.0)
    assert computed == ["a+b", "a+b", "a+b"]
    assert curves.groupby("run")["step"].max().to_dict() == {"a": 4, "b": 5}


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
