"""Data-parallel training under torchrun with 2 CPU processes (gloo).

The driver runs the real CLI (`python -m adakd train` arguments) under
`python -m torch.distributed.run --standalone --nproc_per_node 2`, with `adakd.training.trainer.train`
wrapped so each rank records the r it used at every step into its own side file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adakd.runs.rundir import RunDir

DRIVER = textwrap.dedent("""
    import json, os, sys
    import adakd.training.trainer as trainer
    from adakd.cli import main

    rank = int(os.environ["RANK"])
    seen = []
    real_train = trainer.train

    def recording_train(config, run_dir, **kwargs):
        user = kwargs.pop("on_step")
        def on_step(record):
            seen.append([record["step"], record["ratio"], record["next_ratio"], record["rank"]])
            user(record)
        return real_train(config, run_dir, on_step=on_step, **kwargs)

    trainer.train = recording_train
    code = main(sys.argv[2:])
    with open(os.path.join(sys.argv[1], f"ratios-rank{rank}.json"), "w") as f:
        json.dump(seen, f)
    sys.exit(code)
""")


def test_two_process_gloo_identical_ratios_one_run_dir(tmp_path, tokenizer):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    side = tmp_path / "side"
    side.mkdir()
    runs = tmp_path / "runs"
    run_dir = runs / "ddp"
    args = [
        "train",
        "--preset",
        "smoke",
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--set",
        "max_steps=6",
        "grad_accum=2",
        "batch_size=2",
        "probe_interval=3",
        "checkpoint_interval=3",
        "latf_beta=0.5",
        "latf_eps=0.01",
        "latf_delta=0.2",
        "latf_warmup=0",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(Path.cwd()))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(driver),
            str(side),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    r0 = json.loads((side / "ratios-rank0.json").read_text())
    r1 = json.loads((side / "ratios-rank1.json").read_text())
    assert [row[0] for row in r0] == list(range(1, 7)) and {row[3] for row in r1} == {1}
    assert [row[1:3] for row in r0] == [row[1:3] for row in r1]  # identical r on both ranks
    assert len({row[1] for row in r0}) > 1, "r should move in this test"

    # one run directory, written once (by rank 0)
    assert [p.name for p in runs.iterdir()] == ["ddp"]
    run = RunDir(run_dir)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, 7))
    assert [m["ratio"] for m in metrics] == [row[1] for row in r0]
    # the ranks shared out the single-process order: step s used examples 8(s-1) .. 8s-1
    # (2 ranks x grad_accum 2 x batch 2), and n_valid counts the response tokens of all 8
    from adakd.config import RunConfig
    from adakd.training.runsetup import DataOrder, prepare_data

    config = RunConfig.from_dict(run.read_config()["config"])
    data = prepare_data(config, tokenizer)
    order = DataOrder(len(data.train), config.seed)
    for m in metrics:
        examples = [data.train[order.index(p)] for p in range(8 * (m["step"] - 1), 8 * m["step"])]
        assert m["n_valid"] == sum(sum(t != -100 for t in e["labels"][1:]) for e in examples)
    meta = run.read_config()
    assert meta["world_size"] == 2 and "data-parallel over 2 processes (gloo)" in meta["device_reason"]
    assert run.read_status()["state"] == "finished"
    events = [e["kind"] for e in run.read_events()]
    assert events.count("start") == 1 and events.count("finished") == 1 and events.count("checkpoint") == 2


@pytest.mark.extended
def test_two_process_step_pool_trains_like_one_batch(tmp_path):
    """latf_pool=step over 2 ranks x 2 micro-batches of 2 examples selects over all 8 examples
    of the step (docs/method.md §2.2): the same LATF ratios, selection counts, losses and mean τ
    as one process with one micro-batch of 8 (the same examples in the same order)."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    side = tmp_path / "side"
    side.mkdir()
    lively = ["latf_beta=0.5", "latf_eps=0.01", "latf_delta=0.2", "latf_warmup=0", "probe_interval=0"]
    common = ["max_steps=5", "checkpoint_interval=0", *lively]
    args = ["train", "--preset", "smoke", "--run-dir", str(tmp_path / "ddp"), "--quiet", "--set", *common]
    args += ["grad_accum=2", "batch_size=2", "latf_pool=step"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(Path.cwd()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*command, str(driver), str(side), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    from adakd.presets import resolve_preset
    from adakd.training.trainer import train

    one = train(resolve_preset("smoke", [*common, "grad_accum=1", "batch_size=8"]), tmp_path / "one")
    pooled, single = RunDir(tmp_path / "ddp").read_metrics(), RunDir(one).read_metrics()
    assert len({m["ratio"] for m in single}) > 1, "r should move in this test"
    assert [m["ratio"] for m in pooled] == [m["ratio"] for m in single]
    assert [m["n_selected"] for m in pooled] == [m["n_selected"] for m in single]
    assert [m["n_valid"] for m in pooled] == [m["n_valid"] for m in single]
    for key in ("loss", "kd", "mean_tau", "grad_norm"):
        assert [m[key] for m in pooled] == pytest.approx([m[key] for m in single], rel=2e-5), key
