"""The command line: bad input, train/resume/list, kill -9 recovery, sweep/eval delegation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adakd.cli import main
from adakd.runs.rundir import RunDir

ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path.cwd()))


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "--preset", "smoke", "--set", "lr=-1"], "lr = -1.0 is out of range: must be in (0, 1]"),
        (
            ["train", "--preset", "smoke", "--set", "lr_shedule=1"],
            "unknown config field(s) 'lr_shedule' (did you mean lr_schedule",
        ),
        (["train", "--preset", "smoke", "--set", "max_steps=ten"], "max_steps='ten': cannot parse as an integer"),
        (["train", "--preset", "smoke", "--set", "data=/no/such.jsonl"], "data file '/no/such.jsonl' not found"),
        (["train", "--preset", "smoke", "--name", "../escape"], "contains a path separator"),
        (["train", "--preset", "smoke", "--name", ".hidden"], "starts with '.'"),
        (
            ["train", "--preset", "smoke", "--set", "teacher=no-such-org/no-such-model", "student=subset"],
            "cannot load teacher 'no-such-org/no-such-model'",
        ),  # found only when loading: still nothing written
        (["resume", "no-such-run"], "no run folder 'no-such-run'"),
        (["eval", "no-such-run"], "no run folder 'no-such-run'"),
    ],
)
def test_bad_input_exit_2_clear_message_nothing_written(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "runs"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []


def test_existing_run_dir_is_refused(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")  # eval locks a run folder, never any folder
    (tmp_path / "r" / "config.json").write_text("{}")
    assert main(["train", "--preset", "smoke", "--run-dir", str(tmp_path / "r")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["config.json"]


def test_real_process_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adakd",
            "train",
            "--preset",
            "smoke",
            "--set",
            "idts=maybe",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: idts = 'maybe' is not valid" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        main(["train", "--preset", "nope"])
    assert err.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_train_then_list(tmp_path, capsys):
    root = tmp_path / "runs"
    code = main(
        [
            "train",
            "--preset",
            "smoke",
            "--name",
            "mini",
            "--root",
            str(root),
            "--quiet",
            "--set",
            "max_steps=2",
            "probe_interval=0",
            "checkpoint_interval=0",
        ]
    )
    assert code == 0
    assert f"finished: {root / 'mini'}" in capsys.readouterr().out
    meta = RunDir(root / "mini").read_config()
    assert meta["preset"] == "smoke" and meta["config"]["max_steps"] == 2 and "train" in meta["command"]
    assert main(["list", "--root", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["name"] == "mini" and rows[0]["state"] == "finished"
    assert rows[0]["step"] == 2 and rows[0]["loss"] == RunDir(root / "mini").read_metrics()[-1]["loss"]
    assert main(["list", "--root", str(root)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["NAME", "STATE", "STEP", "LOSS"] and table[1].startswith("mini  finished  2/2")


KILLABLE = textwrap.dedent("""
    import sys, time
    from adakd.presets import resolve_preset
    from adakd.training.trainer import train

    def on_step(record):
        if record["step"] >= 4:   # hang after step 4 so the test can kill -9 a live run
            time.sleep(600)

    config = resolve_preset("smoke", ["max_steps=6", "checkpoint_interval=3", "probe_interval=3"])
    train(config, sys.argv[1], on_step=on_step)
""")


def test_kill_9_leaves_a_readable_crashed_run_that_resumes(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "victim"
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = RunDir(run_dir)
    try:
        deadline = time.time() + 300
        while not any(m["step"] == 4 for m in run.read_metrics()):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.time() < deadline, "run did not reach step 4"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()

    # the run directory reads: status says running, the pid is dead -> crashed
    status = run.read_status()
    assert status["state"] == "running" and status["pid"] == proc.pid
    assert run.effective_state() == "crashed"
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4]
    assert (run_dir / "checkpoints" / "step-000003" / "trainer_state.json").exists()
    assert main(["list", "--root", str(run_dir.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "crashed"

    reached = status["step"]  # what the killed process had recorded
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]  # step 4 redone from checkpoint 3, once
    assert run.read_status()["state"] == "finished"
    events = run.read_events()
    resumed = [e for e in events if e["kind"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["step"] == 3
    # the resume says why (the truncation kept no trace of the kill otherwise)
    assert (resumed[0]["previous_state"], resumed[0]["previous_step"]) == ("crashed", reached)
    assert [e["step"] for e in events if e["kind"] == "probe"] == [0, 3, 6]
    import pandas as pd

    assert sorted(pd.read_parquet(run_dir / "tokens.parquet")["step"].unique()) == [0, 3, 6]


def test_sweep_and_eval_delegate(tmp_path, monkeypatch, capsys):
    import adakd.evaluation.evaluate
    import adakd.training.sweep

    calls = {}

    def fake_sweep(preset, grid, base_overrides, root, name):
        calls["sweep"] = (preset, grid, base_overrides, root, name)
        return Path(root) / name

    def fake_eval(run_dir, data_files, examples, greedy, overrides):
        calls["eval"] = (Path(run_dir), data_files, examples, greedy, overrides)
        return {
            "step": 7,
            "model": "student",
            "rouge_l": {"d": 12.5},
            "rouge_l_spread": {"d": 0.25},
            "n": {"d": 3},
            "degenerate": {"d": 1 / 3},
            "ce": {"d": 2.5},
            "kl_teacher": {"d": None},
            "rouge_l_avg": 12.5,
        }

    monkeypatch.setattr(adakd.training.sweep, "run_sweep", fake_sweep)
    monkeypatch.setattr(adakd.evaluation.evaluate, "evaluate_run", fake_eval)
    assert (
        main(
            [
                "sweep",
                "--preset",
                "demo",
                "--grid",
                "idts_c=0.1,0.3",
                "--grid",
                "seed=0,1",
                "--set",
                "max_steps=5",
                "--name",
                "s1",
                "--root",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert calls["sweep"] == ("demo", {"idts_c": ["0.1", "0.3"], "seed": ["0", "1"]}, ["max_steps=5"], tmp_path, "s1")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")  # eval locks a run folder, never any folder
    data = tmp_path / "d.jsonl"
    data.write_text("")
    assert main(["eval", str(tmp_path / "r"), "--data", str(data), "--examples", "3", "--greedy", "--json"]) == 0
    assert calls["eval"] == (tmp_path / "r", [str(data)], 3, True, {})
    assert '"rouge_l_avg": 12.5' in capsys.readouterr().out
    # by default a summary table: one row per dataset with the seed spread and the degenerate share
    assert main(["eval", str(tmp_path / "r"), "--data", str(data), "--seeds", "5", "--min-reference-words", "0"]) == 0
    assert calls["eval"][4] == {"eval_seeds": 5, "eval_min_reference_words": 0}
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("student")]
    assert row and row[0].split() == ["student", "7", "d", "3", "12.50", "±", "0.25", "33.3", "%", "2.500", "–"]
    assert main(["eval", str(tmp_path / "r"), "--data", str(tmp_path / "missing.jsonl")]) == 2


def test_progress_bar_shows_loss_ratio_tau_and_throughput(capsys, monkeypatch):
    from adakd import cli

    progress = cli._Progress(quiet=False)
    progress.enabled = True  # stderr is not a TTY under pytest
    for step in (1, 2):
        progress(
            {"step": step, "total_steps": 4, "loss": 1.5 / step, "ratio": 0.9, "mean_tau": 1.02, "tokens_per_s": 321.0}
        )
    progress.close()
    err = capsys.readouterr().err
    assert "2/4" in err and "loss=0.7500" in err and "r=0.900" in err and "tau=1.020" in err and "tok_s=321" in err
    assert cli._Progress(quiet=True).enabled is False
