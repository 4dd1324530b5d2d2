"""CUDA: a few real training steps on tiny models with bf16 autocast (skipped without a GPU).

Data is a small Dolly-schema JSONL written by the test, so only the tokenizer of the default
teacher is needed (tiny random models), not its weights.
"""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from adakd.presets import resolve_preset
from adakd.runs.rundir import RunDir
from adakd.training.device import choose_device_and_dtype
from adakd.training.trainer import resume, train

pytestmark = pytest.mark.cuda


def _dolly(tmp_path, n=48):
    path = tmp_path / "dolly.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "instruction": f"What is {i} plus {i + 1}?",
                        "context": "",
                        "response": f"{i} plus {i + 1} is {2 * i + 1}.",
                        "category": "open_qa",
                    }
                )
                + "\n"
            )
    return path


def _config(tmp_path, *extra):
    return resolve_preset(
        "smoke",
        [
            f"data={_dolly(tmp_path)}",
            "device=auto",
            "dtype=auto",
            "max_steps=6",
            "probe_interval=3",
            "checkpoint_interval=3",
            "latf_beta=0.5",
            "latf_eps=0.01",
            "latf_delta=0.2",
            "latf_warmup=0",
            *extra,
        ],
    )


def test_auto_device_is_cuda_with_bf16():
    device, dtype, reason = choose_device_and_dtype(resolve_preset("smoke", ["device=auto", "dtype=auto"]))
    assert device.type == "cuda" and "CUDA available" in reason
    assert dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32)


def test_cuda_steps_with_bf16_autocast_and_resume(tmp_path):
    config = _config(tmp_path)
    straight = tmp_path / "straight"
    train(config, straight)
    run = RunDir(straight)
    meta = run.read_config()
    assert meta["device"] == "cuda" and meta["machine"]["gpu"]
    assert meta["dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, 7))
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in metrics)
    assert run.read_status()["state"] == "finished"
    weights = load_file(str(straight / "checkpoints" / "step-000006" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())  # float32 master weights under autocast

    split = tmp_path / "split"

    def stop_at_3(record):
        if record["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    train(config, split, on_step=stop_at_3)
    assert RunDir(split).read_status()["state"] == "stopped"
    resume(split)
    a, b = metrics, RunDir(split).read_metrics()
    assert [m["step"] for m in b] == list(range(1, 7))
    # bf16 GPU kernels need not be bit-reproducible; the r trajectory and losses must agree closely
    assert [m["loss"] for m in b] == pytest.approx([m["loss"] for m in a], rel=2e-2)
    assert [m["ratio"] for m in b][:4] == [m["ratio"] for m in a][:4]


def test_the_frozen_teacher_is_held_once_in_bf16(tmp_path):
    """autocast would re-cast a float32 teacher at every forward and keep both copies: the
    trainer converts the frozen teacher once, and keeps the student's float32 master weights."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    from adakd.training.device import init_distributed
    from adakd.training.trainer import _Run

    config = _config(tmp_path)
    session = _Run(config, RunDir(tmp_path / "unused"), init_distributed(config), on_step=None)
    session._setup()
    assert {p.dtype for p in session.teacher.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in session.student.parameters()} == {torch.float32}


def test_a_trl_run_on_cuda_starts_at_the_native_runs_loss(tmp_path):
    config = _config(tmp_path)
    train(config, tmp_path / "native")
    train(_config(tmp_path, "trainer=trl"), tmp_path / "trl")
    native, trl = RunDir(tmp_path / "native").read_metrics(), RunDir(tmp_path / "trl").read_metrics()
    assert [m["step"] for m in trl] == list(range(1, 7))
    assert trl[0]["loss"] == pytest.approx(native[0]["loss"], rel=2e-2)  # bf16 kernels: close, not equal
