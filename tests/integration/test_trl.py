"""AdaKD inside TRL's DistillationTrainer (adakd/integrations/trl_distillation.py), on the smoke
shapes (tiny random Llamas with the real tokenizer, CPU).

The native loop is the reference: a TRL run of the same RunConfig must take the same steps
(the same first-step loss, the same LATF ratio trajectory and selections), write a run
directory the dashboard reads, stop and resume like a native run, and run under a real
2-process ``accelerate launch`` (gloo) with one r on both ranks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adakd.presets import resolve_preset
from adakd.runs.rundir import RunDir

pytestmark = pytest.mark.slow

# r moves within a few steps (the controller's reference is set at once, small thresholds)
LIVELY = ["latf_beta=0.5", "latf_eps=0.01", "latf_delta=0.2", "latf_warmup=0"]
# two micro-batches per step, each selected on its own (latf_pool's default); probes and checkpoints on
COMMON = ["max_steps=6", "probe_interval=3", "checkpoint_interval=3", "grad_accum=2", "batch_size=2", *LIVELY]


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory):
    """(native run, TRL run) of the same config, trained once for the module."""
    from adakd.training.trainer import train

    root = tmp_path_factory.mktemp("trl")
    native = train(resolve_preset("smoke", COMMON), root / "native")
    trl = train(resolve_preset("smoke", [*COMMON, "trainer=trl"]), root / "trl")
    return RunDir(native), RunDir(trl)


def test_a_trl_run_takes_the_native_runs_steps(twin_runs):
    native, trl = (run.read_metrics() for run in twin_runs)
    assert [m["step"] for m in trl] == [1, 2, 3, 4, 5, 6]
    assert len({m["ratio"] for m in native}) > 1, "r should move in this test"
    assert [m["ratio"] for m in trl] == [m["ratio"] for m in native]
    assert [m["n_selected"] for m in trl] == [m["n_selected"] for m in native]
    assert [m["n_valid"] for m in trl] == [m["n_valid"] for m in native]
    # step 1 starts from the same weights on the same examples: the same loss up to float rounding
    # (TRL's left-padded prompts sum the attention in another order)
    assert trl[0]["loss"] == pytest.approx(native[0]["loss"], rel=1e-6)
    for key in ("loss", "kd", "ce", "mean_tau", "grad_norm", "lr"):
        assert [m[key] for m in trl] == pytest.approx([m[key] for m in native], rel=1e-5), key


def test_a_trl_run_writes_a_run_directory_the_dashboard_reads(twin_runs):
    from analysis.runs import load_run

    _, trl = twin_runs
    meta = trl.read_config()
    assert meta["trainer"] == "trl" and meta["config"]["trainer"] == "trl"
    assert trl.read_status()["state"] == "finished"
    assert trl.read_status()["last_checkpoint"] == 6
    kinds = [e["kind"] for e in trl.read_events()]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert kinds.count("checkpoint") == 2 and "ratio_change" in kinds
    # LATF's state sits in each TRL checkpoint, beside TRL's own files
    saved = json.loads((trl.checkpoints / "checkpoint-6" / "adakd_state.json").read_text())
    assert saved["schedule"]["ratio"] == trl.read_metrics()[-1]["next_ratio"]
    run = load_run(trl.path)
    assert sorted(run.tokens["step"].unique()) == [0, 3, 6]
    assert list(run.metrics["step"]) == [1, 2, 3, 4, 5, 6]


def test_the_explorer_loads_a_trl_runs_trained_student(twin_runs):
    import torch
    from safetensors.torch import load_file

    from analysis.run_student import load_student_checkpoint, run_checkpoints

    _, trl = twin_runs
    assert run_checkpoints(trl.path) == [3, 6]  # TRL's checkpoint-<step> folders
    student = load_student_checkpoint(trl.path)  # the latest
    saved = load_file(str(trl.checkpoints / "checkpoint-6" / "model.safetensors"))
    state = student.state_dict()
    assert all(torch.equal(state[name].cpu(), tensor) for name, tensor in saved.items())
    untrained = load_student_checkpoint(trl.path, step=0).state_dict()
    assert any(not torch.equal(untrained[name], tensor) for name, tensor in saved.items())


def test_a_stopped_trl_run_resumes_to_the_same_numbers(twin_runs, tmp_path):
    """SIGINT during step 4: the run checkpoints and stops; `resume` continues from that
    checkpoint (weights, optimiser, data position, LATF state) to the uninterrupted numbers."""
    from adakd.training.trainer import check_resumable, resume, train

    def interrupt(record):
        if record["step"] == 4:
            os.kill(os.getpid(), signal.SIGINT)

    path = tmp_path / "stopped"
    train(resolve_preset("smoke", [*COMMON, "trainer=trl"]), path, on_step=interrupt)
    run = RunDir(path)
    stopped_at = run.read_status()["step"]
    assert run.read_status()["state"] == "stopped" and stopped_at < 6
    assert check_resumable(path)[1][0] == stopped_at  # the stop's own checkpoint
    resume(path)
    _, reference = twin_runs
    assert [(m["step"], m["ratio"]) for m in run.read_metrics()] == [
        (m["step"], m["ratio"]) for m in reference.read_metrics()
    ]
    assert [m["loss"] for m in run.read_metrics()] == pytest.approx([m["loss"] for m in reference.read_metrics()])
    kinds = [e["kind"] for e in run.read_events()]
    assert kinds.count("stopped") == 1 and kinds.count("resume") == 1 and kinds[-1] == "finished"
    with pytest.raises(ValueError, match="already finished"):
        check_resumable(path)


def test_a_damaged_latf_state_stops_the_resume_with_a_clear_message(twin_runs, tmp_path):
    import shutil

    from adakd.integrations.trl_distillation import last_trl_checkpoint
    from adakd.training.trainer import resume

    path = tmp_path / "copy"
    shutil.copytree(twin_runs[1].path, path)
    # a checkpoint without its adakd_state.json (written last) is incomplete: never chosen
    (path / "checkpoints" / "checkpoint-6" / "adakd_state.json").unlink()
    assert last_trl_checkpoint(path) == (3, path / "checkpoints" / "checkpoint-3")
    (path / "checkpoints" / "checkpoint-3" / "adakd_state.json").write_text("{not json")
    status = json.loads((path / "status.json").read_text())
    (path / "status.json").write_text(json.dumps({**status, "state": "stopped"}))
    with pytest.raises(ValueError, match=r"adakd_state.json is damaged .* resume from an earlier checkpoint"):
        resume(path)
    assert RunDir(path).read_status()["state"] == "failed"
    assert (path / "checkpoints" / "checkpoint-3" / "adakd_state.json").read_text() == "{not json"  # kept


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DRIVER = textwrap.dedent("""
    import sys
    from adakd.presets import resolve_preset
    from adakd.training.trainer import train

    train(resolve_preset("smoke", sys.argv[2:]), sys.argv[1])
""")


def test_two_process_accelerate_launch_trains_like_one_batch(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo), 2 micro-batches of 2 each: the step's 8
    examples are selected over as one pool and r agrees on both ranks (a disagreement raises),
    so the run equals one native process with one batch of 8 (the same examples in order)."""
    from adakd.training.trainer import train

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    common = ["max_steps=5", "checkpoint_interval=0", "probe_interval=0", "latf_pool=step", *LIVELY]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(Path.cwd()), PYTHONFAULTHANDLER="1")
    args = [*common, "trainer=trl", "grad_accum=2", "batch_size=2"]
    for attempt in range(3):  # the free port can be taken by another process before the launcher binds it
        ddp = tmp_path / f"ddp-{attempt}"
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        launch += ["--main_process_port", str(_free_port())]  # accelerate's default 29500 may be taken
        proc = subprocess.run(
            [*launch, str(driver), str(ddp), *args], env=env, capture_output=True, text=True, timeout=600
        )
        if proc.returncode == 0 or "address already in use" not in proc.stderr.lower():
            break
    # Every rank exits cleanly: before the trainer was collected ahead of destroy_process_group
    # (trl_distillation._own_process_group), a rank aborted now and then in C++ teardown after
    # the run had finished ("terminate called without an active exception").
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "terminate called" not in proc.stderr
    assert RunDir(ddp).read_status()["state"] == "finished"
    assert "2 processes" in RunDir(ddp).read_events()[0]["message"]

    one = train(resolve_preset("smoke", [*common, "grad_accum=1", "batch_size=8"]), tmp_path / "one")
    pooled, single = RunDir(ddp).read_metrics(), RunDir(one).read_metrics()
    assert len({m["ratio"] for m in single}) > 1, "r should move in this test"
    assert [m["ratio"] for m in pooled] == [m["ratio"] for m in single]
    assert [m["n_selected"] for m in pooled] == [m["n_selected"] for m in single]
    assert pooled[0]["loss"] == pytest.approx(single[0]["loss"], rel=1e-6)
    for key in ("loss", "kd", "mean_tau", "grad_norm"):
        assert [m[key] for m in pooled] == pytest.approx([m[key] for m in single], rel=2e-5), key
