"""Paper Table 1 on the demo settings (issue 10): the ten presets and the SFT row (issue 14), the `table1`
sweep grid, and the two student-data regimes through the trainer on tiny random models (a `table1-*` preset
with the demo's models swapped for the smoke preset's tiny ones)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import adakd.training.regimes as regimes_mod
from adakd.config import RunConfig
from adakd.presets import PRESETS, resolve_preset
from adakd.runs.rundir import RunDir
from adakd.training.runsetup import build_models, preflight, prepare_data
from adakd.training.sweep import build_config, expand_grid, parse_grid
from adakd.training.trainer import train

# method -> (divergence, divergence_params, regime), as in the paper / adakd.method.divergences defaults
METHODS = {
    "fkl": ("fkl", {}, "ground_truth"),
    "rkl": ("rkl", {}, "ground_truth"),
    "ab": ("ab", {"alpha": 0.2, "beta": 0.7}, "ground_truth"),
    "gkd": ("jsd", {"lam": 0.9}, "gkd"),
    "distillm": ("srkl", {"lam": 0.1}, "distillm"),
}
TINY = [
    "teacher=tiny-random",
    "student=tiny-random",
    "teacher_sft_steps=0",  # the tiny teacher is made in code: nothing to fine-tune
    "max_train_examples=64",
    "max_prompt_length=32",
    "max_length=64",
    "eval_examples=0",
    "probe_interval=0",
    "probe_examples=2",
    "gradient_batch_size=4",
    "gen_max_new_tokens=4",
    "device=cpu",
]


def test_the_ten_presets_are_table1_on_the_demo_settings():
    demo = RunConfig.from_dict(PRESETS["demo"]).to_dict()
    names = [n for n in PRESETS if n.startswith("table1-") and n != "table1-sft"]
    assert sorted(names) == sorted(f"table1-{m}{s}" for m in METHODS for s in ("", "-adakd"))
    for method, (div, params, regime) in METHODS.items():
        for suffix, (latf, idts) in (("", ("off", "off")), ("-adakd", ("adaptive", "on"))):
            config = RunConfig.from_dict(PRESETS[f"table1-{method}{suffix}"])
            preflight(config)  # divergence parameters valid for the divergence, device available
            got = config.to_dict()
            assert (got["divergence"], got["divergence_params"], got["regime"]) == (div, params, regime)
            assert (got["latf"], got["idts"]) == (latf, idts)
            if regime == "gkd":
                assert got["gkd_lambda"] == 0.5
            changed = {k for k in got if got[k] != demo[k]}
            assert changed <= {"divergence", "divergence_params", "regime", "latf", "idts"}, changed


def test_the_sft_row_is_the_demo_without_kd():
    got = resolve_preset("table1-sft").to_dict()
    demo = RunConfig.from_dict(PRESETS["demo"]).to_dict()
    assert (got["kd_ratio"], got["latf"], got["idts"], got["regime"]) == (0.0, "off", "off", "ground_truth")
    assert {k for k in got if got[k] != demo[k]} == {"kd_ratio", "latf", "idts"}


def test_the_table1_grid_runs_the_eleven_presets():
    points = expand_grid(parse_grid(["table1"]))
    assert len(points) == 11
    for name, overrides in points:
        arm = name.removeprefix("table1=")
        assert build_config("demo", overrides) == resolve_preset(f"table1-{arm}")


def _recording_infos(monkeypatch, cls):
    """Wrap cls.prepare_batch, recording the info of every micro-batch."""
    infos = []
    real = cls.prepare_batch

    def recording(self, *args, **kwargs):
        batch, info = real(self, *args, **kwargs)
        infos.append(dict(info))
        return batch, info

    monkeypatch.setattr(cls, "prepare_batch", recording)
    return infos


def test_gkd_with_adakd_and_grad_accum_logs_the_merged_micro_batch_fields(tmp_path, monkeypatch):
    infos = _recording_infos(monkeypatch, regimes_mod.GKDRegime)
    config = resolve_preset("table1-gkd-adakd", [*TINY, "grad_accum=2", "max_steps=4"])
    train(config, tmp_path / "gkd")
    metrics = RunDir(tmp_path / "gkd").read_metrics()
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and len(infos) == 8
    assert all(math.isfinite(m["loss"]) for m in metrics)
    sources = []
    for m, (a, b) in zip(metrics, zip(infos[::2], infos[1::2], strict=True), strict=True):
        source = a["data_source"] if a["data_source"] == b["data_source"] else "mixed"
        lengths = [i["gen_length"] for i in (a, b) if i["gen_length"] is not None]
        assert m["data_source"] == source and m["on_policy"] == (a["on_policy"] or b["on_policy"])
        assert m["gen_length"] == (sum(lengths) / len(lengths) if lengths else None)
        assert m["student_data_prob"] == 0.5 and m["buffer_size"] == 0
        sources.append(source)
    assert "mixed" in sources, f"this seed should give a step whose two micro-batches differ: {sources}"


def _held_out_ce(student, batches) -> tuple[float, int]:
    """Token-weighted CE of the student on the labels, from a plain full forward in float64."""
    total, count = 0.0, 0
    student.eval()
    with torch.no_grad():
        for batch in batches:
            logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            mask = labels != -100
            total += F.cross_entropy(logits[:, :-1][mask].double(), labels[mask], reduction="sum").item()
            count += int(mask.sum())
    return total / count, count


def test_distillm_validation_loss_is_the_students_held_out_cross_entropy(tmp_path):
    from safetensors.torch import load_model

    config = resolve_preset("table1-distillm", [*TINY, "max_steps=2", "probe_interval=2"])
    train(config, tmp_path / "distillm")
    run = RunDir(tmp_path / "distillm")
    validations = [e for e in run.read_events() if e["kind"] == "validation"]
    assert [e["step"] for e in validations] == [0, 2]  # once before training, then every probe interval

    _, student, tokenizer = build_models(config, torch.device("cpu"))  # the initial student (seeded)
    batches = prepare_data(config, tokenizer).validation_batches
    assert sum(b["input_ids"].shape[0] for b in batches) <= 64
    expected0, n_tokens = _held_out_ce(student, batches)
    load_model(student, str(run.checkpoints / "step-000002" / "model.safetensors"))
    expected2, _ = _held_out_ce(student, batches)
    assert [e["loss"] for e in validations] == pytest.approx([expected0, expected2], rel=1e-5)
    assert all(e["tokens"] == n_tokens for e in validations)

    # φ: reference = the step-0 loss; +0.1 only if the step-2 loss came back >= reference + 0.1
    phi = 0.1 if validations[1]["loss"] >= validations[0]["loss"] + 0.1 else 0.0
    state = json.loads((run.checkpoints / "step-000002" / "trainer_state.json").read_text())
    scheduler = state["regime"]["scheduler"]
    assert scheduler["n_updates"] == 2 and scheduler["prob"] == pytest.approx(phi)
    assert validations[1]["student_data_prob"] == pytest.approx(phi)
