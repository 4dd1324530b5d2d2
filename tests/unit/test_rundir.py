"""Run-directory writers and tolerant readers; checkpoint files (unit tests, no models)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from adakd.runs.rundir import (
    RunDir,
    append_jsonl,
    check_run_name,
    effective_state,
    read_json,
    read_jsonl,
    read_jsonl_report,
    recorded_config,
    write_json_atomic,
)
from adakd.training import checkpoint as ckpt


def test_json_atomic_roundtrip_and_no_temp_left(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"x": 1, "bad": float("nan"), "inf": float("inf"), "nested": [1.5, float("-inf")]})
    assert json.loads(path.read_text()) == {"x": 1, "bad": None, "inf": None, "nested": [1.5, None]}
    write_json_atomic(path, {"x": 2})
    assert read_json(path) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_json_missing_or_damaged_gives_default(tmp_path):
    assert read_json(tmp_path / "missing.json", default={}) == {}
    (tmp_path / "bad.json").write_text('{"x": ')
    assert read_json(tmp_path / "bad.json") is None


def test_recorded_config_reads_the_config_object_or_says_none(tmp_path):
    assert recorded_config(tmp_path) is None  # killed before the trainer wrote config.json
    (tmp_path / "config.json").write_text('{"config": {"lr": 0.001}, "format": 1}')
    assert recorded_config(tmp_path) == {"lr": 0.001}
    (tmp_path / "config.json").write_text('{"config": [1, 2]}')  # not an object
    assert recorded_config(tmp_path) is None
    (tmp_path / "config.json").write_text('{"config": {"lr"')  # truncated
    assert recorded_config(tmp_path) is None


def test_jsonl_tolerates_truncated_last_line_and_reports_garbage(tmp_path):
    path = tmp_path / "m.jsonl"
    for i in range(3):
        append_jsonl(path, {"step": i + 1, "loss": 1.0 / (i + 1)})
    with open(path, "a") as f:
        f.write("this is not json\n")
        f.write("[1, 2]\n")
        f.write('{"step": 4, "loss": 0.2')  # a writer killed mid-line
    report = read_jsonl_report(path)
    assert [r["step"] for r in report.records] == [1, 2, 3]
    assert report.truncated
    assert len(report.problems) == 2
    assert "line 4" in report.problems[0] and "line 5" in report.problems[1]
    assert read_jsonl(path) == report.records
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_nan_in_jsonl_is_written_as_null(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"step": 1, "loss": float("nan")})
    assert path.read_text() == '{"step": 1, "loss": null}\n'


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("", "empty"),
        ("  ", "empty"),
        ("a/b", "path separator"),
        ("..", ".."),
        ("a..b", ".."),
        (".hidden", "starts with '.'"),
        ("bad name", "characters"),
        ("x\\y", "path separator"),
    ],
)
def test_bad_run_names(name, fragment):
    with pytest.raises(ValueError) as err:
        check_run_name(name)
    assert fragment in str(err.value)


def test_good_run_names():
    for name in ("demo", "demo-20260101-120000", "idts_c=0.3,seed=1", "a.b"):
        assert check_run_name(name) == name


def test_create_refuses_nonempty(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create()
    assert run.checkpoints.is_dir()
    with pytest.raises(ValueError, match="already exists"):
        RunDir(tmp_path / "r").create()


def test_status_and_effective_state(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create()
    assert run.effective_state() == "unknown"
    status = run.set_status("running", step=3, total_steps=10, last_checkpoint=None)
    assert status["pid"] == os.getpid()
    assert set(status) >= {"state", "step", "total_steps", "pid", "error", "updated_at", "last_checkpoint"}
    assert run.effective_state() == "running"  # this process is alive
    # a process that has exited (and was reaped): its pid is dead
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = dict(status, pid=proc.pid)
    assert effective_state(dead) == "crashed"
    assert effective_state(dict(dead, host="some-other-host")) == "running"  # cannot tell: trust it
    assert effective_state(dict(dead, state="finished")) == "finished"
    with pytest.raises(ValueError, match="must be one of"):
        run.set_status("done", step=1, total_steps=1)


def test_zombie_counts_as_dead(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    # not reaped yet: a zombie still answers kill(pid, 0)
    import time

    deadline = time.time() + 10
    while time.time() < deadline:
        stat = open(f"/proc/{proc.pid}/stat").read()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.02)
    assert effective_state({"state": "running", "pid": proc.pid}) == "crashed"
    proc.wait()


def test_truncate_after_drops_later_records(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create()
    for step in range(1, 6):
        run.append("metrics.jsonl", {"step": step})
        run.event(step, "checkpoint", "x")
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 6')
    run.truncate_after(3)
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    assert [r["step"] for r in run.read_events()] == [1, 2, 3]
    assert run.file("metrics.jsonl").read_text().endswith("\n")


def test_parquet_atomic(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create()
    frame = pd.DataFrame({"step": [0, 0, 5], "x": [1.0, 2.0, 3.0]})
    run.write_parquet("tokens.parquet", frame)
    pd.testing.assert_frame_equal(run.read_parquet("tokens.parquet"), frame)
    run.file("gradients.parquet").write_bytes(b"garbage")
    assert run.read_parquet("gradients.parquet") is None  # reported, not raised
    assert run.read_parquet("missing.parquet") is None


# ---------------------------------------------------------------- checkpoints
def _tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied, like a causal LM head
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return model, opt, sched


def _train_once(model, opt, sched):
    loss = model(torch.tensor([1, 2, 3])).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()


def test_checkpoint_roundtrip_restores_everything(tmp_path):
    model, opt, sched = _tiny()
    _train_once(model, opt, sched)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    state = {"schedule": {"ratio": 0.9, "ema": 1.25, "ref": None, "n": 3}, "rng": ckpt.rng_state(), "data_position": 12}
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched, state)
    assert path.name == "step-000001" and not list(tmp_path.glob("*.tmp"))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    model2, opt2, sched2 = _tiny()
    loaded = ckpt.load_checkpoint(path, model2, opt2, sched2)
    assert loaded["step"] == 1 and loaded["data_position"] == 12 and loaded["schedule"]["ema"] == 1.25
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert model2[1].weight is model2[0].weight  # still tied
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    ckpt.set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    # the next update is identical from the restored state
    _train_once(model, opt, sched)
    _train_once(model2, opt2, sched2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_listing_prune_and_tmp_leftovers(tmp_path):
    model, opt, sched = _tiny()
    for step in (2, 4, 6):
        ckpt.save_checkpoint(tmp_path, step, model, opt, sched, {"rng": None})
    (tmp_path / "step-000008.tmp").mkdir()  # a killed writer
    (tmp_path / "step-000010").mkdir()  # incomplete: only a deletion killed half-way leaves this
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4, 6]
    assert ckpt.latest_checkpoint(tmp_path)[0] == 6
    removed = ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == ["step-000002", "step-000008.tmp", "step-000010"]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [4, 6]
    # saving a step again replaces it
    ckpt.save_checkpoint(tmp_path, 6, model, opt, sched, {"rng": None, "mark": 1})
    assert json.loads((tmp_path / "step-000006" / "trainer_state.json").read_text())["mark"] == 1
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None


def test_optimizer_file_needs_no_pickle(tmp_path):
    model, opt, sched = _tiny()
    _train_once(model, opt, sched)
    path = ckpt.save_checkpoint(tmp_path, 1, model, opt, sched, {})
    torch.load(path / "optimizer.pt", weights_only=True)
    torch.load(path / "scheduler.pt", weights_only=True)
