"""RunConfig validation, (de)serialisation, overrides and presets (unit tests, milliseconds)."""

from __future__ import annotations

import json

import pytest

from adakd.config import DIVERGENCES, INDICATORS, LATF_KINDS, RunConfig, apply_overrides, parse_overrides
from adakd.presets import PRESETS, resolve_preset


def test_defaults_are_valid_and_roundtrip_through_json():
    config = RunConfig()
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_contract_field_names_present():
    # docs/contracts.md documents every field; analysis and the dashboard read them by these names
    from pathlib import Path

    contracts = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    undocumented = [name for name in RunConfig.field_names() if f"`{name}`" not in contracts]
    assert undocumented == []


def test_names_match_the_loss_modules():
    import adakd.method.difficulty
    import adakd.method.divergences
    import adakd.method.latf

    # one definition each (adakd/names.py), not copies that could drift apart
    assert DIVERGENCES == tuple(adakd.method.divergences.DIVERGENCES)
    assert INDICATORS is adakd.method.difficulty.INDICATORS
    assert LATF_KINDS is adakd.method.latf.LATF_KINDS


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("lr", 0.0, "lr = 0.0 is out of range: must be in (0, 1]"),
        ("lr", 2.0, "in (0, 1]"),
        ("max_steps", 0, "max_steps = 0 is out of range: must be in [1, 10,000,000]"),
        ("batch_size", -1, "batch_size"),
        ("ratio_start", 0.0, "ratio_start = 0.0 is out of range: must be in (0, 1]"),
        ("ratio_end", 1.5, "ratio_end"),
        ("latf_beta", 1.0, "latf_beta = 1.0 is out of range: must be in [0, 1)"),
        ("latf_min_ratio", 0.0, "latf_min_ratio"),
        ("latf_warmup", 1.0, "latf_warmup"),
        ("kd_ratio", 1.5, "kd_ratio = 1.5 is out of range: must be in [0, 1]"),
        ("base_temperature", 0.0, "base_temperature"),
        ("idts_c", -0.1, "idts_c"),
        ("gen_top_p", 0.0, "gen_top_p"),
        ("keep_checkpoints", 0, "keep_checkpoints = 0 is out of range: must be in [1, 1,000]"),
        ("probe_interval", -1, "probe_interval"),
        ("eval_examples", -5, "eval_examples"),
        ("warmup_ratio", 1.0, "warmup_ratio"),
        ("max_grad_norm", -1.0, "max_grad_norm"),
        ("student_layers", [], "student_layers"),
        ("student_layers", [0, 0], "distinct"),
        ("max_train_examples", 0, "max_train_examples"),
        ("teacher", " ", "teacher"),
    ],
)
def test_out_of_range_names_field_and_range(field, value, fragment):
    with pytest.raises(ValueError) as err:
        RunConfig(**{field: value})
    assert fragment in str(err.value)
    assert field in str(err.value)


@pytest.mark.parametrize(
    "field,value,suggestion",
    [
        ("latf", "adaptiv", "adaptive"),
        ("idts", "of", "off"),
        ("divergence", "rk", "rkl"),
        ("indicator", "helinger", "hellinger"),
        ("lr_schedule", "cosin", "cosine"),
    ],
)
def test_bad_choice_lists_valid_values_and_suggests(field, value, suggestion):
    with pytest.raises(ValueError) as err:
        RunConfig(**{field: value})
    msg = str(err.value)
    assert field in msg and f"did you mean {suggestion!r}" in msg and "must be one of" in msg


def test_max_length_must_exceed_prompt_length():
    with pytest.raises(ValueError, match="max_length = 64 .*> max_prompt_length \\(64\\)"):
        RunConfig(max_prompt_length=64, max_length=64)


def test_wrong_types_rejected():
    with pytest.raises(ValueError, match="max_steps must be an integer"):
        RunConfig(max_steps=True)
    with pytest.raises(ValueError, match="lr must be a number"):
        RunConfig(lr="fast")
    with pytest.raises(ValueError, match="finite"):
        RunConfig(lr=float("nan"))
    assert RunConfig(lr=1).lr == 1.0 and isinstance(RunConfig(lr=1).lr, float)


def test_unknown_keys_list_valid_ones_and_suggest():
    with pytest.raises(ValueError) as err:
        RunConfig.from_dict({"learning_rate": 1e-4, "idts_cc": 0.3})
    msg = str(err.value)
    assert "'idts_cc' (did you mean idts_c" in msg
    assert "valid fields:" in msg and "max_steps" in msg


def test_regimes():
    assert RunConfig(regime="gkd", gkd_lambda=0.3).regime == "gkd"
    with pytest.raises(ValueError, match="must be one of ground_truth, gkd, distillm"):
        RunConfig(regime="on_policy")
    with pytest.raises(ValueError, match="gkd_lambda = 1.5 is out of range"):
        RunConfig(regime="gkd", gkd_lambda=1.5)
    assert RunConfig(regime="distillm").regime == "distillm"


def test_overrides_parse_by_field_type():
    c = apply_overrides(
        RunConfig(),
        [
            "lr=3e-4",
            "max_steps=12",
            "eval_greedy=yes",
            "trust_remote_code=0",
            "student_layers=0,5,9",
            "eval_data=a.jsonl,b.jsonl",
            'divergence_params={"lam": 0.8}',
            "max_train_examples=none",
            "divergence=jsd",
            "data=/tmp/x.jsonl",
        ],
    )
    assert c.lr == 3e-4 and c.max_steps == 12 and c.eval_greedy is True and c.trust_remote_code is False
    assert c.student_layers == [0, 5, 9] and c.eval_data == ["a.jsonl", "b.jsonl"]
    assert c.divergence_params == {"lam": 0.8} and c.max_train_examples is None
    assert apply_overrides(c, ["student_layers=[1, 2]", "eval_data="]).student_layers == [1, 2]
    assert apply_overrides(c, ["eval_data="]).eval_data == []
    assert apply_overrides(c, ["max_train_examples=7"]).max_train_examples == 7


@pytest.mark.parametrize(
    "item,fragment",
    [
        ("lr", "not of the form key=value"),
        ("=3", "not of the form key=value"),
        ("lr=fast", "lr='fast': cannot parse as a number"),
        ("max_steps=1.5", "cannot parse as an integer"),
        ("eval_greedy=maybe", "cannot parse as a bool"),
        ("divergence_params=[1]", "JSON object"),
        ("student_layers=a,b", "comma-separated list"),
        ("stepz=3", "unknown config field(s) 'stepz'"),
    ],
)
def test_bad_overrides(item, fragment):
    with pytest.raises(ValueError) as err:
        parse_overrides([item])
    assert fragment in str(err.value)


def test_override_range_checked_after_parse():
    with pytest.raises(ValueError, match="latf_delta = 1.0 is out of range"):
        apply_overrides(RunConfig(), ["latf_delta=1"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = resolve_preset(name)
    assert isinstance(config, RunConfig)
    unknown = set(PRESETS[name]) - set(RunConfig.field_names())
    assert not unknown


def test_preset_shapes():
    demo, smoke = resolve_preset("demo"), resolve_preset("smoke")
    assert demo.teacher == "smollm2-135m-instruct" and demo.student == "pruned" and demo.data == "chatterbot"
    # the demo evaluates under the protocol: >= 100 held-out prompts with long replies, >= 3 seeds
    assert demo.eval_examples >= 100 and demo.eval_holdout >= demo.eval_examples and demo.eval_seeds >= 3
    assert demo.eval_min_reference_words == 11
    assert resolve_preset("quick").student == "subset"  # the former demo, kept for a quick look
    assert smoke.teacher == "tiny-random" and smoke.max_steps <= 10
    gpu = resolve_preset("gpt2-dolly")
    assert (gpu.teacher, gpu.student) == ("gpt2-xl", "gpt2") and gpu.data.endswith(".jsonl")


def test_unknown_preset_suggests():
    with pytest.raises(ValueError, match="unknown preset 'dem' \\(did you mean 'demo'\\?\\)"):
        resolve_preset("dem")


def test_preset_plus_overrides():
    c = resolve_preset("smoke", ["max_steps=3", "idts=inverse"])
    assert c.max_steps == 3 and c.idts == "inverse" and c.teacher == "tiny-random"


def test_a_recorded_config_without_a_later_field_reads_as_the_run_was_made():
    from adakd.config import RECORDED_DEFAULTS, RunConfig

    recorded = RunConfig().to_dict()
    del recorded["loss_input"]  # written before the setting existed
    assert RunConfig.from_record(recorded).loss_input == "logits" == RECORDED_DEFAULTS["loss_input"]
    assert RunConfig.from_dict(recorded).loss_input == "hidden"  # a new, partial config: the default
    assert RunConfig.from_record({**recorded, "loss_input": "hidden"}).loss_input == "hidden"
