"""The ablation arms through the trainer on the smoke preset: CTKD (its τ trains, is logged per
step, checkpointed and resumed exactly), SFT (no teacher forward), the topk indicator and logit
standardisation; and their config validation."""

from __future__ import annotations

import math
import os
import signal

import pytest

import adakd.training.trainer as trainer_mod
from adakd.config import RunConfig
from adakd.presets import resolve_preset
from adakd.runs.rundir import RunDir
from adakd.training.trainer import resume, train


def smoke(*overrides: str):
    return resolve_preset("smoke", ["probe_interval=0", "checkpoint_interval=0", *overrides])


def _stop_at(step: int):
    def on_step(record):
        if record["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)

    return on_step


def test_ctkd_temperature_trains_is_logged_and_resumes_exactly(tmp_path):
    config = smoke("max_steps=6", "idts=off", "ctkd=true", "lr=0.05")
    straight = tmp_path / "straight"
    train(config, straight)
    metrics = RunDir(straight).read_metrics()
    taus = [m["ctkd_tau"] for m in metrics]
    lambdas = [m["ctkd_lambda"] for m in metrics]
    assert taus[0] == 1.0 and len(set(taus)) == len(taus), taus  # starts at 1 and moves every step
    assert lambdas == pytest.approx([0.5 * (1 + math.cos(math.pi * i / 5)) for i in range(6)])
    assert all(m["mean_tau"] == pytest.approx(m["ctkd_tau"], rel=1e-6) for m in metrics)

    split = tmp_path / "split"
    train(config, split, on_step=_stop_at(3))
    resume(split)
    again = RunDir(split).read_metrics()
    assert [m["ctkd_tau"] for m in again] == pytest.approx(taus, rel=1e-6)
    assert [m["loss"] for m in again] == pytest.approx([m["loss"] for m in metrics], rel=1e-6)


def test_sft_skips_the_teacher(tmp_path, monkeypatch):
    calls = []
    real = trainer_mod.adakd_loss_from_hidden  # the default loss_input = hidden

    def spy(student_hidden, teacher_hidden, *args, **kwargs):
        calls.append(teacher_hidden)
        return real(student_hidden, teacher_hidden, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "adakd_loss_from_hidden", spy)
    config = resolve_preset(
        "table1-sft",
        [
            "teacher=tiny-random",
            "student=tiny-random",
            "teacher_sft_steps=0",
            "max_train_examples=64",
            "max_prompt_length=32",
            "max_length=64",
            "max_steps=3",
            "eval_examples=0",
            "probe_interval=0",
            "device=cpu",
        ],
    )
    train(config, tmp_path / "sft")
    assert calls and all(t is None for t in calls)
    metrics = RunDir(tmp_path / "sft").read_metrics()
    assert all(m["kd"] == 0 and m["n_selected"] == 0 and m["loss"] == pytest.approx(m["ce"]) for m in metrics)
    assert all(math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in metrics)


@pytest.mark.parametrize("overrides", [["indicator=topk", "indicator_topk=10"], ["logit_standardize=true"]])
def test_other_arms_train(tmp_path, overrides):
    train(smoke("max_steps=3", *overrides), tmp_path / "run")
    metrics = RunDir(tmp_path / "run").read_metrics()
    assert len(metrics) == 3 and all(math.isfinite(m["loss"]) for m in metrics)


@pytest.mark.parametrize(
    "values,fragment",
    [
        ({"ctkd": True}, "ctkd = true needs idts = 'off'"),
        ({"ctkd": True, "idts": "off", "kd_ratio": 0.0}, "needs kd_ratio > 0"),
        ({"ctkd": True, "idts": "off", "base_temperature": 0.05}, "must be > 0.05"),
        ({"indicator_topk": 0}, "indicator_topk = 0 is out of range"),
        ({"indicator": "nmtkd"}, "indicator = 'nmtkd' is not valid"),
    ],
)
def test_arm_settings_are_validated(values, fragment):
    with pytest.raises(ValueError, match=fragment):
        RunConfig(**values)
