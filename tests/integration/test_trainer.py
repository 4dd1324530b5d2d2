"""Integration tests of adakd.training.trainer on tiny random models (the `smoke` preset) in temp dirs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import adakd.training.trainer as trainer_mod
from adakd.presets import resolve_preset
from adakd.runs.rundir import RunDir
from adakd.training import checkpoint as ckpt
from adakd.training.runsetup import DataOrder, build_models, preflight
from adakd.training.trainer import resume, train

METRIC_FIELDS = {
    "step",
    "loss",
    "kd",
    "ce",
    "ratio",
    "next_ratio",
    "ema",
    "ref",
    "mean_tau",
    "n_valid",
    "n_selected",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "step_seconds",
    "time",
}
# LATF that moves within a few steps, so r trajectories are worth comparing
LIVELY_LATF = ["latf_beta=0.5", "latf_eps=0.01", "latf_delta=0.2", "latf_warmup=0"]


def smoke(*overrides: str):
    return resolve_preset("smoke", ["probe_interval=0", "checkpoint_interval=0", *overrides])


# ---------------------------------------------------------------- data order (unit)
def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(10, seed=3)
    epoch0 = [order.index(p) for p in range(10)]
    epoch1 = [order.index(p) for p in range(10, 20)]
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1  # reshuffled each epoch
    fresh = DataOrder(10, seed=3)
    assert [fresh.index(p) for p in range(15, 5, -1)] == [order.index(p) for p in range(15, 5, -1)]
    assert [DataOrder(10, seed=4).index(p) for p in range(10)] != epoch0
    state = torch.get_rng_state()
    DataOrder(10, seed=5).index(7)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed


# ---------------------------------------------------------------- end to end
def test_smoke_run_end_to_end(tmp_path):
    run_dir = tmp_path / "smoke"
    config = smoke(
        "max_steps=20",
        "probe_interval=10",
        "checkpoint_interval=5",
        "keep_checkpoints=2",
        "eval_examples=2",
        "eval_max_new_tokens=4",
    )
    assert train(config, run_dir, name="smoke", preset="smoke") == run_dir
    run = RunDir(run_dir)

    meta = json.loads((run_dir / "config.json").read_text())
    assert meta["format"] == 1 and meta["name"] == "smoke" and meta["preset"] == "smoke"
    assert meta["config"] == config.to_dict() and meta["seed"] == 0
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["device_reason"]
    assert set(meta["versions"]) >= {"python", "torch", "transformers", "adakd"}
    assert meta["num_parameters"]["teacher"] > meta["num_parameters"]["student"] > 0
    assert {"platform", "cpu_count", "gpu"} <= set(meta["machine"]) and meta["started_at"].endswith("Z")

    status = run.read_status()
    assert status["state"] == "finished" and status["step"] == 20 and status["total_steps"] == 20
    assert status["last_checkpoint"] == 20 and status["error"] is None

    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, 21))
    for m in metrics:
        assert METRIC_FIELDS <= set(m)
        assert math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
        assert 0 < m["n_selected"] <= m["n_valid"] and 0 < m["ratio"] <= 1
        assert m["kd"] == m["loss"]  # kd_ratio = 1: the objective is the AdaKD term
    first, last = (sum(m["loss"] for m in part) / 5 for part in (metrics[:5], metrics[-5:]))
    assert last < 0.95 * first, (first, last)

    kinds = [e["kind"] for e in run.read_events()]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert kinds.count("checkpoint") == 4 and kinds.count("probe") == 3
    assert [s for s, _ in ckpt.list_checkpoints(run.checkpoints)] == [15, 20]  # keep_checkpoints=2

    tokens = pd.read_parquet(run_dir / "tokens.parquet")
    assert sorted(tokens["step"].unique()) == [0, 10, 20]
    assert {"difficulty", "selected", "group", "tau", "token_text"} <= set(tokens.columns)
    grads = pd.read_parquet(run_dir / "gradients.parquet")
    assert sorted(grads["step"].unique()) == [0, 10, 20]

    evals = run.read_eval()
    assert [(e["step"], e["model"]) for e in evals] == [(0, "teacher"), (0, "student_init"), (20, "student")]
    assert all(e["n"] == {"chatterbot": 2} for e in evals)
    assert all(0 <= e["rouge_l_avg"] <= 100 for e in evals)

    # the saved student is the trained one: finite, and moved away from the initial weights
    saved = load_file(str(run.checkpoints / "step-000020" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())
    _, initial, _ = build_models(config, torch.device("cpu"))
    initial = initial.state_dict()
    assert set(saved) <= set(initial)
    assert all(not torch.equal(saved[k], initial[k]) for k in saved if k.endswith("q_proj.weight"))


def test_bad_input_writes_nothing(tmp_path):
    config = smoke("data=/nonexistent/dolly.jsonl")
    with pytest.raises(ValueError, match="data file '/nonexistent/dolly.jsonl' not found"):
        train(config, tmp_path / "r")
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="divergence_params: divergence 'rkl' has no parameter"):
        preflight(smoke('divergence_params={"lam": 0.5}'))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(ValueError, match="already exists"):
        train(smoke(), tmp_path / "used")


# ---------------------------------------------------------------- resume
def _stop_at(step: int):
    def on_step(record):
        if record["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)  # the CLI's Ctrl-C: finish the step, checkpoint, stop

    return on_step


def test_resume_equivalence(tmp_path):
    """8 steps straight == 4 steps, stop, resume, 4 steps. The split run also probes and
    evaluates, which must not change training either."""
    config = smoke("max_steps=8", "lr_schedule=cosine", "warmup_ratio=0.25", *LIVELY_LATF)
    straight = tmp_path / "straight"
    train(config, straight)

    split = tmp_path / "split"
    instrumented = dataclasses.replace(config, probe_interval=3, eval_examples=1, eval_max_new_tokens=2)
    train(instrumented, split, on_step=_stop_at(4))
    status = RunDir(split).read_status()
    assert status["state"] == "stopped" and status["step"] == 4 and status["last_checkpoint"] == 4
    assert [m["step"] for m in RunDir(split).read_metrics()] == [1, 2, 3, 4]
    resume(split)

    a, b = RunDir(straight).read_metrics(), RunDir(split).read_metrics()
    assert [m["step"] for m in b] == list(range(1, 9))
    ratios = [m["ratio"] for m in a]
    assert len(set(ratios)) > 2, "LATF should move r in this test"
    assert [m["ratio"] for m in b] == ratios
    assert [(m["ema"], m["ref"], m["next_ratio"]) for m in b] == [(m["ema"], m["ref"], m["next_ratio"]) for m in a]
    assert [m["lr"] for m in b] == [m["lr"] for m in a]
    # same data, weights, optimiser and RNG: on CPU the losses agree to float rounding
    assert [m["loss"] for m in b] == pytest.approx([m["loss"] for m in a], rel=1e-6, abs=1e-9)
    wa = load_file(str(straight / "checkpoints" / "step-000008" / "model.safetensors"))
    wb = load_file(str(split / "checkpoints" / "step-000008" / "model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    kinds = [e["kind"] for e in RunDir(split).read_events()]
    assert kinds.count("resume") == 1 and kinds[-1] == "finished" and "stopped" in kinds
    resumed = next(e for e in RunDir(split).read_events() if e["kind"] == "resume")
    assert (resumed["step"], resumed["previous_state"], resumed["previous_step"]) == (4, "stopped", 4)
    assert RunDir(split).read_status()["state"] == "finished"
    with pytest.raises(ValueError, match="already finished"):
        resume(split)


@pytest.mark.parametrize(
    "arm",
    [
        ["idts=on"],
        ["kd_ratio=0.5", "divergence=fkl"],
        pytest.param(["ctkd=true", "idts=off"], marks=pytest.mark.extended),
    ],
)
def test_hidden_state_loss_trains_like_the_logits_loss(tmp_path, arm):
    """loss_input=hidden (the default) and loss_input=logits: the same losses, LATF ratios,
    selections and gradient norms over 6 steps with two accumulated micro-batches (docs/method.md §10)."""
    runs = {}
    for path in ("hidden", "logits"):
        config = smoke("max_steps=6", "grad_accum=2", f"loss_input={path}", *LIVELY_LATF, *arm)
        runs[path] = train(config, tmp_path / path)
    a, b = RunDir(runs["hidden"]).read_metrics(), RunDir(runs["logits"]).read_metrics()
    assert [m["ratio"] for m in a] == [m["ratio"] for m in b]
    assert [m["n_selected"] for m in a] == [m["n_selected"] for m in b]
    for key in ("loss", "kd", "ce", "grad_norm"):
        assert [m[key] for m in a] == pytest.approx([m[key] for m in b], rel=1e-5, abs=1e-7), key
    # (Weights are not compared element by element: AdamW divides each gradient by its own
    # running scale, so entries whose gradient is float noise on both paths move by up to lr
    # in either direction; the losses of later steps are what those weights produce.)


@pytest.mark.parametrize("loss_input", ["hidden", "logits"])
def test_step_pool_selects_as_one_batch_of_its_micro_batches(tmp_path, loss_input):
    """latf_pool=step with 2 accumulated micro-batches of b examples trains like one micro-batch
    of 2b (the same examples, docs/method.md §2.2): the same LATF ratios, selection counts,
    losses and gradient norms over 5 steps. The default (micro-batch) pool with 2 micro-batches
    differs from both (its own IDTS median and top-k per micro-batch)."""
    common = ("max_steps=5", f"loss_input={loss_input}", *LIVELY_LATF, "idts=on")
    b = resolve_preset("smoke").batch_size
    runs = {
        "pooled": train(smoke(*common, "grad_accum=2", "latf_pool=step"), tmp_path / "pooled"),
        "one": train(smoke(*common, "grad_accum=1", f"batch_size={2 * b}"), tmp_path / "one"),
        "micro": train(smoke(*common, "grad_accum=2"), tmp_path / "micro"),
    }
    pooled, one, micro = (RunDir(runs[k]).read_metrics() for k in ("pooled", "one", "micro"))
    assert [m["ratio"] for m in pooled] == [m["ratio"] for m in one]
    assert [m["n_selected"] for m in pooled] == [m["n_selected"] for m in one]
    for key in ("loss", "kd", "mean_tau", "grad_norm"):
        assert [m[key] for m in pooled] == pytest.approx([m[key] for m in one], rel=2e-5), key
    assert pooled[0]["kd"] != pytest.approx(micro[0]["kd"], rel=1e-4)  # another IDTS median per micro-batch
    assert json.loads((runs["pooled"] / "config.json").read_text())["config"]["latf_pool"] == "step"


# ---------------------------------------------------------------- faults
def test_non_finite_loss_is_skipped_and_logged(tmp_path, monkeypatch):
    real = trainer_mod.adakd_loss_from_hidden  # the default loss_input = hidden
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third optimiser step (grad_accum = 1)
            return dataclasses.replace(out, loss=out.loss * float("nan"))
        return out

    updates = {"n": 0}
    real_step = torch.optim.AdamW.step

    def counting_step(self, *args, **kwargs):
        updates["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "adakd_loss_from_hidden", poisoned)
    monkeypatch.setattr(torch.optim.AdamW, "step", counting_step)
    run_dir = tmp_path / "nan"
    train(smoke("max_steps=5"), run_dir)
    run = RunDir(run_dir)
    assert updates["n"] == 4  # no optimiser update for the poisoned step
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 4, 5]
    skipped = [e for e in run.read_events() if e["kind"] == "skipped_step"]
    assert len(skipped) == 1 and skipped[0]["step"] == 3 and skipped[0]["reason"] == "non-finite loss"
    assert run.read_status()["state"] == "finished"
    state = json.loads((run.checkpoints / "step-000005" / "trainer_state.json").read_text())
    assert state["schedule"]["n"] == 4  # LATF saw only the finite losses
    weights = load_file(str(run.checkpoints / "step-000005" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_exception_marks_run_failed(tmp_path, monkeypatch):
    real = trainer_mod.adakd_loss_from_hidden  # the default loss_input = hidden
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "adakd_loss_from_hidden", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train(smoke("max_steps=4"), tmp_path / "f")
    run = RunDir(tmp_path / "f")
    status = run.read_status()
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom" and status["step"] == 1
    assert run.effective_state() == "failed"
    failed = [e for e in run.read_events() if e["kind"] == "failed"]
    assert failed and failed[0]["error"] == "RuntimeError: boom"


# ---------------------------------------------------------------- data regimes (adakd.training.regimes)
def test_gkd_regime_trains_on_student_samples(tmp_path):
    run_dir = tmp_path / "gkd"
    train(smoke("regime=gkd", "gkd_lambda=1", "gen_max_new_tokens=4", "max_steps=3"), run_dir)
    run = RunDir(run_dir)
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(m["on_policy"] is True and 0 < m["gen_length"] <= 4 for m in metrics)  # λ = 1: always sampled
    assert all(math.isfinite(m["loss"]) for m in metrics)
    state = json.loads((run.checkpoints / "step-000003" / "trainer_state.json").read_text())
    assert state["regime"]["kind"] == "gkd"


def test_distillm_regime_gets_validation_losses(tmp_path):
    run_dir = tmp_path / "distillm"
    train(smoke("regime=distillm", "gen_max_new_tokens=4", "max_steps=4", "probe_interval=2"), run_dir)
    run = RunDir(run_dir)
    validations = [e for e in run.read_events() if e["kind"] == "validation"]
    # the first before training (DistiLLM's reference), then every validation interval
    assert [e["step"] for e in validations] == [0, 2, 4] and all(math.isfinite(e["loss"]) for e in validations)
    state = json.loads((run.checkpoints / "step-000004" / "trainer_state.json").read_text())
    assert state["regime"]["kind"] == "distillm" and state["regime"]["scheduler"]["n_updates"] == 3
    assert all("student_data_prob" in m for m in run.read_metrics())
