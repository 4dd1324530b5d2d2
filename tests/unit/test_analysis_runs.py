"""analysis.runs: loading run directories (good, damaged, live), caching, finding, listing,
method labels. All on hand-made run dirs (tests/rundir_factory.py) with known contents."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import runs as R
from analysis.runs import (
    LIST_COLUMNS,
    SAMPLE_RUNS_DIR,
    default_roots,
    find_runs,
    is_sample_path,
    list_runs,
    load_run,
    load_runs,
    method_label,
)
from tests.rundir_factory import (
    append_garbage,
    dead_pid,
    default_config,
    eval_record,
    make_run,
    make_sweep,
    truncate,
    write_json,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    R.clear_cache()
    yield
    R.clear_cache()


# ---------------------------------------------------------------- a good run


def test_load_run_reads_every_file(tmp_path):
    path = make_run(
        tmp_path,
        "good",
        config={"idts_c": 0.3, "seed": 7},
        steps=12,
        probe_steps=[0, 6, 12],
        n_examples=3,
        n_tokens=5,
        final_rouge={"dolly": 20.0, "vicuna": 30.0},
        reference_rouge={"teacher": {"dolly": 40.0, "vicuna": 44.0}},
    )
    written_meta = json.loads((path / "config.json").read_text())
    run = load_run(path)

    assert run.problems == []
    assert run.path == path.resolve() and run.name == "good" and not run.is_sample
    assert run.meta == written_meta and run.config == written_meta["config"]
    assert run.config["idts_c"] == 0.3 and run.seed == 7
    assert run.state == "finished" and run.status["step"] == 12
    # metrics: 12 lines, kd = 3 / (1 + 0.1 step) as written by the factory
    assert run.metrics["step"].tolist() == list(range(1, 13))
    assert run.metrics["kd"].tolist() == pytest.approx([3 / (1 + 0.1 * s) for s in range(1, 13)])
    assert run.metrics["step"].dtype == np.int64 and run.metrics["loss"].dtype == np.float64
    # events: start, ratio changes after steps 5 and 10, finished
    assert run.events["kind"].tolist() == ["start", "ratio_change", "ratio_change", "finished"]
    assert run.events["step"].tolist() == [0, 5, 10, 12]
    # tokens: 3 probe steps × 3 examples × 5 tokens, with the contract columns
    assert len(run.tokens) == 45 and set(R.TOKEN_COLUMNS) <= set(run.tokens.columns)
    assert run.probe_steps == [0, 6, 12]
    assert run.tokens["selected"].dtype == bool and run.tokens["example"].dtype == np.int64
    # gradients: "paper" has 3 groups per step, "current" 2 at r = 1 (step 0), 3 below (6, 12)
    assert len(run.gradients) == (3 + 2) + (3 + 3) + (3 + 3)
    # evals: one row per (record, dataset) plus "average"
    evals = run.evals.set_index(["step", "model", "dataset"])
    assert evals.loc[(12, "student", "dolly"), "rouge_l"] == 20.0
    assert evals.loc[(12, "student", "average"), "rouge_l"] == 25.0
    assert evals.loc[(12, "student", "average"), "n"] == 20  # 10 + 10 samples
    assert evals.loc[(0, "teacher", "average"), "rouge_l"] == 42.0
    assert len(run.eval_records) == 2
    assert run.final_eval("student")["dataset"].tolist() == ["dolly", "vicuna", "average"]
    assert run.label == "rkl + AdaKD (c=0.3)"


def test_resumed_run_keeps_the_last_line_of_a_repeated_step(tmp_path):
    metrics = [
        {"step": 1, "loss": 5.0},
        {"step": 2, "loss": 4.0},
        {"step": 3, "loss": 3.0},
        {"step": 2, "loss": 4.5},
        {"step": 3, "loss": 3.5},
        {"step": 4, "loss": 2.5},
    ]
    evals = [eval_record(4, "student", {"d": 10.0}), eval_record(4, "student", {"d": 11.0})]
    run = load_run(make_run(tmp_path, "resumed", metrics=metrics, evals=evals))
    assert run.metrics["step"].tolist() == [1, 2, 3, 4]
    assert run.metrics["loss"].tolist() == [5.0, 4.5, 3.5, 2.5]
    assert run.final_eval()["rouge_l"].tolist() == [11.0, 11.0]
    # repeated steps are shown, though: such a run is never plainly "finished" (issue 17)
    assert "metrics.jsonl: steps 2-3 logged more than once" in run.step_gaps
    assert run.problems == run.step_gaps


def test_missing_optional_files_give_empty_frames_with_columns(tmp_path):
    run = load_run(make_run(tmp_path, "bare", metrics=False, events=False, tokens=False, gradients=False, evals=False))
    assert run.problems == []
    for frame, columns in (
        (run.metrics, R.METRIC_COLUMNS),
        (run.events, R.EVENT_COLUMNS),
        (run.tokens, R.TOKEN_COLUMNS),
        (run.gradients, R.GRADIENT_COLUMNS),
        (run.evals, R.EVAL_COLUMNS),
    ):
        assert frame.empty and list(columns) == list(frame.columns)
    assert run.probe_steps == [] and run.final_eval().empty


# ---------------------------------------------------------------- damaged runs


def _damaged_runs(root: Path) -> dict[str, Path]:
    paths = {
        name: make_run(root, name)
        for name in (
            "good-1",
            "trunc-parquet",
            "garbage-line",
            "cut-last-line",
            "no-config",
            "bad-config",
            "bad-eval",
            "good-2",
        )
    }
    truncate(paths["trunc-parquet"] / "tokens.parquet", 0.5)
    lines = (paths["garbage-line"] / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines.insert(3, "{garbage\n")
    (paths["garbage-line"] / "metrics.jsonl").write_text("".join(lines))
    append_garbage(paths["cut-last-line"] / "metrics.jsonl", '{"step": 11, "lo', newline=False)
    (paths["no-config"] / "config.json").unlink()
    (paths["bad-config"] / "config.json").write_text('{"format": 1, "config": {"latf": ')
    append_garbage(paths["bad-eval"] / "eval.jsonl", json.dumps({"step": 3, "model": "student"}))
    append_garbage(
        paths["bad-eval"] / "eval.jsonl", json.dumps({"step": 4, "model": "student", "rouge_l": {"d": "high"}})
    )
    return paths


def test_damaged_runs_load_what_they_can_and_say_what_is_wrong(tmp_path):
    paths = _damaged_runs(tmp_path)
    runs = {name: load_run(p) for name, p in paths.items()}

    for name in ("good-1", "good-2", "cut-last-line"):
        assert runs[name].problems == [], name
        assert len(runs[name].metrics) == 10 and len(runs[name].tokens) == 48
    # A cut last line (killed writer) is skipped silently; the ten complete lines remain.
    assert runs["cut-last-line"].metrics["step"].max() == 10

    trunc = runs["trunc-parquet"]
    assert len(trunc.problems) == 1 and trunc.problems[0].startswith("tokens.parquet: unreadable")
    assert trunc.tokens.empty and list(trunc.tokens.columns) == list(R.TOKEN_COLUMNS)
    assert len(trunc.metrics) == 10 and len(trunc.gradients) > 0  # the rest still loads

    garbage = runs["garbage-line"]
    assert garbage.problems == ["metrics.jsonl line 4: not valid JSON: '{garbage'"]
    assert garbage.metrics["step"].tolist() == list(range(1, 11))

    no_config = runs["no-config"]
    assert any(p.startswith("config.json missing") for p in no_config.problems)
    assert no_config.config == {} and no_config.meta == {} and no_config.name == "no-config"
    assert len(no_config.metrics) == 10 and no_config.state == "finished"

    bad_config = runs["bad-config"]
    assert any(p.startswith("config.json: not valid JSON") for p in bad_config.problems)
    assert bad_config.config == {}

    bad_eval = runs["bad-eval"]
    assert bad_eval.problems == [
        "eval.jsonl record 2: needs step, model and rouge_l, skipped",
        "eval.jsonl record 3: rouge_l has non-numeric scores, skipped",
    ]
    assert len(bad_eval.eval_records) == 1 and bad_eval.final_eval()["step"].tolist() == [10, 10]

    table = list_runs([tmp_path]).set_index("name")
    assert len(table) == 8
    assert table.loc["good-1", "problems"] == "" and table.loc["good-2", "rouge_l"] == 30.0
    assert table.loc["no-config", "method"] == "unknown"
    assert "tokens.parquet" in table.loc["trunc-parquet", "problems"]


def test_parquet_with_missing_and_wrongly_typed_columns(tmp_path):
    tokens = pd.DataFrame({"step": [0, 0], "example": [0, 0], "token_index": [0, 1], "difficulty": ["0.5", "oops"]})
    run = load_run(make_run(tmp_path, "odd", tokens=tokens))
    assert any(p.startswith("tokens.parquet: missing columns position, token_id") for p in run.problems)
    assert "tokens.parquet: column difficulty has non-numeric values (set to NA)" in run.problems
    assert run.tokens["difficulty"].iloc[0] == 0.5 and np.isnan(run.tokens["difficulty"].iloc[1])
    assert set(R.TOKEN_COLUMNS) <= set(run.tokens.columns)
    assert run.tokens["tau"].isna().all()


def test_not_a_directory(tmp_path):
    run = load_run(tmp_path / "nope")
    assert run.state == "unknown" and run.problems == ["run directory not found"]
    assert run.metrics.empty and run.tokens.empty


# ---------------------------------------------------------------- state


def test_states_from_status(tmp_path):
    assert load_run(make_run(tmp_path, "live", state="running", pid=os.getpid())).state == "running"
    assert load_run(make_run(tmp_path, "dead", state="running", pid=dead_pid())).state == "crashed"
    for state in ("finished", "stopped", "failed"):
        assert load_run(make_run(tmp_path, state, state=state)).state == state
    weird = make_run(tmp_path, "weird", status={"state": "exploded", "step": 1})
    assert load_run(weird).state == "unknown"
    missing = load_run(make_run(tmp_path, "nostatus", status=False))
    assert missing.state == "unknown" and "status.json missing: the run's state is unknown" in missing.problems


def test_a_cached_running_run_turns_crashed_when_its_process_dies(tmp_path):
    child = subprocess.Popen(["sleep", "60"])
    try:
        path = make_run(tmp_path, "live", state="running", pid=child.pid)
        assert load_run(path).state == "running"
    finally:
        child.kill()
        child.wait()
    assert load_run(path).state == "crashed"  # no file changed; the process did


# ---------------------------------------------------------------- caching


def test_cache_returns_the_same_object_until_a_file_changes(tmp_path):
    path = make_run(tmp_path, "cached", steps=5)
    first = load_run(path)
    assert first.signature == R.run_signature(path) and len(first.signature) == len(R.RUN_FILES)
    assert load_run(path) is first
    assert load_run(str(path)) is first  # same directory, any spelling
    assert load_runs([path, path]) == [first, first]

    with open(path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "loss": 0.5}) + "\n")
    second = load_run(path)
    assert second is not first and second.metrics["step"].max() == 6
    assert second.signature != first.signature

    status = json.loads((path / "status.json").read_text())
    write_json(path / "status.json", {**status, "state": "stopped"})
    third = load_run(path)
    assert third is not second and third.state == "stopped"

    # A parquet rewrite (temp + rename) is a new file even with the same size and mtime.
    tokens = pd.read_parquet(path / "tokens.parquet")
    stat = (path / "tokens.parquet").stat()
    tokens.assign(difficulty=tokens["difficulty"] / 2).to_parquet(path / "tokens.tmp")
    os.replace(path / "tokens.tmp", path / "tokens.parquet")
    os.utime(path / "tokens.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fourth = load_run(path)
    assert fourth is not third
    assert fourth.tokens["difficulty"].sum() == pytest.approx(third.tokens["difficulty"].sum() / 2)

    R.clear_cache()
    assert load_run(path) is not fourth


def test_a_training_run_is_read_afresh_and_never_cached(tmp_path):
    """It changes every step: a cache keyed on its signature would keep a stale copy per step."""
    path = make_run(tmp_path, "live", steps=3, state="running", pid=os.getpid())
    first = load_run(path)
    assert first.state == "running" and load_run(path) is not first
    for step in (4, 5, 6):
        with open(path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "loss": 0.5}) + "\n")
        assert load_run(path).metrics["step"].max() == step
    assert R._read_settled_run.cache_info().currsize == 0

    status = json.loads((path / "status.json").read_text())
    write_json(path / "status.json", {**status, "state": "finished"})
    finished = load_run(path)
    assert load_run(path) is finished  # cached from now on
    assert R._read_settled_run.cache_info().currsize == 1


def test_a_cached_load_reads_no_file_again(tmp_path, monkeypatch):
    """Loading a settled run again parses nothing (a few stat calls for its signature); a change
    to one of its files reads it afresh. Counted, not timed: timings belong to benchmarks/."""
    path = make_run(tmp_path, "fast")
    R.clear_cache()
    reads = []
    read_run = R._read_run
    monkeypatch.setattr(R, "_read_run", lambda *a, **k: reads.append(a[0]) or read_run(*a, **k))
    first = load_run(path)
    for _ in range(100):
        assert load_run(path) is first
    assert len(reads) == 1
    with open(path / "metrics.jsonl", "a") as f:
        f.write("\n")
    load_run(path)
    assert len(reads) == 2


# ---------------------------------------------------------------- finding and listing


def test_find_runs_sees_runs_sweeps_and_a_run_given_as_root(tmp_path):
    root = tmp_path / "runs"
    a = make_run(root, "a")
    b = make_run(root, "b", meta=False)  # no config.json: found by its status.json
    sweep = make_sweep(root, "c-sweep", {"c0.1": {"idts_c": 0.1}, "c0.3": {"idts_c": 0.3}})
    s1, s2 = sweep / "c0.1", sweep / "c0.3"
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    make_run(root / ".hidden", "x")
    make_run(root, "half.tmp")
    grouped = make_sweep(root / "study", "ablation", {"seed=0": {"seed": 0}})  # <root>/<study>/<sweep>/<run>
    (root / "deep" / "deeper" / "deepest").mkdir(parents=True)
    make_run(root / "deep" / "deeper" / "deepest", "too-deep")
    single = make_run(tmp_path / "elsewhere", "single")

    found = find_runs([root, single, tmp_path / "missing", root])
    assert found == [p.resolve() for p in (a, b, s1, s2, grouped / "seed=0", single)]

    table = list_runs([root])
    assert list(table.columns) == LIST_COLUMNS
    assert table["sweep"].tolist() == ["", "", "c-sweep", "c-sweep", "study/ablation"]
    assert table["c"].tolist()[2:4] == [0.1, 0.3]
    assert json.loads((sweep / "sweep.json").read_text())["grid"] == {"idts_c": [0.1, 0.3]}


def test_list_runs_values(tmp_path):
    make_run(tmp_path, "full", steps=20, config={"idts_c": 0.3, "seed": 2}, final_rouge={"d1": 10.0, "d2": 20.0})
    make_run(
        tmp_path, "plain", steps=8, config={"latf": "off", "idts": "off"}, state="stopped", evals=False, total_steps=50
    )
    table = list_runs([tmp_path]).set_index("name")
    full, plain = table.loc["full"], table.loc["plain"]
    assert full["method"] == "rkl + AdaKD (c=0.3)" and full["c"] == 0.3 and full["seed"] == 2
    assert (full["divergence"], full["latf"], full["idts"]) == ("rkl", "adaptive", "on")
    assert full["steps"] == 20 and full["total_steps"] == 20 and full["state"] == "finished"
    assert full["final_loss"] == pytest.approx(3 / (1 + 0.1 * 20))
    assert full["rouge_l"] == 15.0 and full["preset"] == "smoke" and not full["is_sample"]
    assert plain["method"] == "rkl" and pd.isna(plain["c"]) and plain["state"] == "stopped"
    assert plain["steps"] == 8 and plain["total_steps"] == 50 and pd.isna(plain["rouge_l"])
    assert list_runs([tmp_path / "empty"]).columns.tolist() == LIST_COLUMNS


def test_checkpoints_lists_complete_ones_only(tmp_path):
    path = make_run(tmp_path, "ck", checkpoints=[10, 5])
    (path / "checkpoints" / "step-000015.tmp").mkdir()
    (path / "checkpoints" / "step-000020").mkdir()  # no weights yet
    assert load_run(path).checkpoints == [5, 10]


def test_default_roots_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "mine"))
    assert default_roots() == [(tmp_path / "mine").resolve(), SAMPLE_RUNS_DIR]
    monkeypatch.delenv("ADAKD_RUNS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the user data directory on Linux
    monkeypatch.chdir(tmp_path)
    assert default_roots()[0] == (tmp_path / "data" / "adakd" / "runs").resolve()  # not ./runs
    assert SAMPLE_RUNS_DIR == Path(R.__file__).resolve().parents[1] / "sample_runs"
    assert is_sample_path(SAMPLE_RUNS_DIR / "demo-ablation" / "full-s0")
    assert not is_sample_path(tmp_path / "sample_runs" / "x")
    assert load_run(make_run(tmp_path, "flagged"), is_sample=True).is_sample


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize(
    "overrides, label",
    [
        ({}, "rkl + AdaKD"),
        ({"idts_c": 0.3}, "rkl + AdaKD (c=0.3)"),
        ({"latf": "off", "idts": "off"}, "rkl"),
        ({"latf": "off"}, "rkl + IDTS"),
        ({"idts": "off"}, "rkl + LATF"),
        ({"latf": "fixed", "ratio_start": 0.75, "idts": "off"}, "rkl + fixed r=0.75"),
        ({"latf": "cosine", "ratio_start": 1.0, "ratio_end": 0.75, "idts": "off"}, "rkl + cosine r 1→0.75"),
        ({"latf": "linear", "ratio_start": 1.0, "ratio_end": 0.5}, "rkl + linear r 1→0.5 + IDTS"),
        ({"latf": "off", "idts": "inverse", "idts_c": 0.7}, "rkl + inverse IDTS (c=0.7)"),
        ({"latf": "off", "idts": "off", "idts_c": 0.9}, "rkl"),  # c does not matter without IDTS
        ({"divergence": "fkl", "indicator": "entropy"}, "fkl + AdaKD (indicator=entropy)"),
        ({"regime": "gkd", "divergence": "jsd", "latf": "off", "idts": "off"}, "GKD/jsd"),
        ({"regime": "distillm", "divergence": "srkl"}, "DistiLLM/srkl + AdaKD"),
        ({"base_temperature": 2.0, "kd_ratio": 0.5}, "rkl + AdaKD (τ=2, kd_ratio=0.5)"),
        ({"latf_pool": "step"}, "rkl + AdaKD (pool=step)"),
        ({"latf_pool": "step", "latf": "off", "idts": "off"}, "rkl"),  # nothing is selected or tempered
    ],
)
def test_method_label(overrides, label):
    assert method_label(default_config(**overrides)) == label
    assert method_label({"config": default_config(**overrides)}) == label  # whole config.json


def test_method_label_of_an_empty_config():
    assert method_label({}) == "unknown"


# ---------------------------------------------------------------- the shipped sample runs


def test_sample_runs_load_cleanly():
    paths = find_runs([SAMPLE_RUNS_DIR])
    if not paths:
        pytest.skip("sample_runs/ holds no runs yet")
    table = list_runs([SAMPLE_RUNS_DIR])
    assert table["is_sample"].all()
    bad = table[table["problems"] != ""]
    assert bad.empty, bad[["name", "problems"]].to_string()
    assert set(table["state"]) == {"finished"}
