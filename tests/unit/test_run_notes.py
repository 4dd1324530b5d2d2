"""adakd/runs/run_notes.py: a run's tags and notes, read tolerant, written atomically, damaged files
kept aside; and app/run_filter.py: the Runs page's search and filters, on hand-made tables."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from adakd.runs.run_notes import NOTES_FILE, parse_tags, read_notes, write_notes
from app.run_filter import NO_SWEEP, RunFilter, apply_filter, filter_options
from tests.rundir_factory import make_run


def test_notes_round_trip_and_missing_file(tmp_path):
    run = make_run(tmp_path, "r", steps=2, tokens=False, gradients=False)
    assert read_notes(run).tags == () and read_notes(run).notes == "" and not read_notes(run).problems
    saved = write_notes(run, ["baseline", "lr sweep"], "first try, lr 1e-4")
    again = read_notes(run)
    assert again == saved and again.tags == ("baseline", "lr sweep") and again.notes == "first try, lr 1e-4"
    record = json.loads((run / NOTES_FILE).read_text())
    assert record["format"] == 1 and record["updated"].endswith("Z")
    assert not list(run.glob(f".{NOTES_FILE}.*.tmp"))  # the atomic write left no temp file


def test_tags_as_typed():
    assert parse_tags(" baseline,  lr   sweep ,,Baseline, x") == ("baseline", "lr sweep", "x")
    assert parse_tags("") == ()
    with pytest.raises(ValueError, match="longer than 40 characters"):
        parse_tags("a" * 41)
    with pytest.raises(ValueError, match="at most 20"):
        parse_tags(",".join(f"t{i}" for i in range(21)))


def test_bad_input_is_refused_and_writes_nothing(tmp_path):
    run = make_run(tmp_path, "r", steps=2, tokens=False, gradients=False)
    with pytest.raises(ValueError, match="under 10,000"):
        write_notes(run, [], "x" * 10_001)
    with pytest.raises(ValueError, match="not a run directory"):
        write_notes(tmp_path / "elsewhere", [], "")
    assert not (run / NOTES_FILE).exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("content", ["{not json", '{"tags": "one", "notes": ""}', "[1, 2]"])
def test_a_damaged_file_reads_empty_with_a_problem_and_is_kept_aside(tmp_path, content):
    run = make_run(tmp_path, "r", steps=2, tokens=False, gradients=False)
    (run / NOTES_FILE).write_text(content)
    damaged = read_notes(run)
    assert damaged.tags == () and damaged.notes == "" and damaged.problems
    write_notes(run, ["new"], "")
    kept = list(run.glob(f"{NOTES_FILE}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_text() == content
    assert read_notes(run).tags == ("new",)


TABLE = pd.DataFrame(
    {
        "name": ["a", "b", "c", "d"],
        "method": ["rkl", "rkl + AdaKD", "rkl + AdaKD", "fkl"],
        "preset": ["demo", "demo", None, "smoke"],
        "sweep": ["ablation", "ablation", "", "divergences"],
        "state": ["finished", "finished", "running", "failed"],
        "tags": ["baseline", "baseline, Good", "", "good"],
        "notes": ["", "lr 1e-4 worked", "", "diverged at step 3"],
    }
)


def test_filters_and_search():
    def names(**kw) -> list[str]:
        return apply_filter(TABLE, RunFilter(**kw))["name"].tolist()

    assert names() == ["a", "b", "c", "d"]
    assert names(values={"method": ["rkl + AdaKD"]}) == ["b", "c"]
    assert names(values={"method": ["rkl + AdaKD"], "state": ["finished"]}) == ["b"]
    assert names(values={"sweep": [NO_SWEEP]}) == ["c"]
    assert names(values={"preset": ["–"]}) == ["c"]  # no preset
    assert names(tags=["good"]) == ["b", "d"]  # tags compare case-insensitively
    assert names(tags=["good", "baseline"]) == ["b"]  # every chosen tag
    assert names(search="ADAKD") == ["b", "c"]
    assert names(search="lr worked") == ["b"]  # every word, anywhere in the searched columns
    assert names(search="step 3 fkl") == ["d"]
    assert names(search="nothing-like-this") == []
    options = filter_options(TABLE)
    assert options["sweep"] == [NO_SWEEP, "ablation", "divergences"]
    assert options["tags"] == ["baseline", "Good"]  # "good" of run d is the same tag
