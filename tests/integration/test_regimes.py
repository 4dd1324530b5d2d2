"""Tests of adakd/training/regimes.py: generated-batch layout by hand, sampling, buffer, DistiLLM's φ, regimes.

Run: .venv/bin/python -m pytest tests/test_regimes.py -x -q
Tiny random Llamas (adakd.models.loading.tiny_random_llama) with explicit end/pad ids; the real
tokenizer only where its special tokens matter.
"""

from __future__ import annotations

import json

import pytest
import torch

from adakd.config import RunConfig
from adakd.data.tokenize import collate, next_token_targets
from adakd.models.loading import tiny_random_llama
from adakd.training.regimes import DistiLLMRegime, GKDRegime, Regime, make_regime, merge_infos
from adakd.training.replay import AdaptiveStudentDataProb, ReplayBuffer
from adakd.training.student_samples import (
    build_generated_batch,
    cut_at_end,
    derive_seed,
    prompts_from_batch,
    sample_student_responses,
    seeded_generator,
)

V, PAD, END = 24, 0, 2
M = -100


@pytest.fixture(scope="module")
def student():
    # untied head and a larger init than the default 0.02: a default tiny Llama just repeats its
    # last input token, which would hide padding/position errors from the greedy check below
    return tiny_random_llama(V, layers=2, hidden=32, seed=3, tie_word_embeddings=False, initializer_range=0.2)


def _gt_batch():
    """Two right-padded ground-truth rows, written by hand:
    row 0: prompt [5, 6, 7], response [9, 2];  row 1: prompt [8, 4], response [3, 11, 2]."""
    return {
        "input_ids": torch.tensor([[5, 6, 7, 9, 2], [8, 4, 3, 11, 2]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]),
        "labels": torch.tensor([[M, M, M, 9, 2], [M, M, 3, 11, 2]]),
    }


def _config(**kw):
    base = dict(regime="gkd", seed=7, max_prompt_length=8, max_length=12, gen_max_new_tokens=5, max_steps=10)
    base.update(kw)
    return RunConfig(**base)


# ------------------------------------------------------------------ layout of a generated batch
def test_generated_batch_layout_by_hand():
    batch = build_generated_batch([[5, 6, 7], [8, 9]], [[10, 11, END], [12]], pad_id=PAD, max_length=16)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 10, 11, 2], [8, 9, 12, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[M, M, M, 10, 11, 2], [M, M, 12, M, M, M]]
    # after the trainer's shift, the logits at the last prompt token predict the first
    # response token, and the last response token predicts the end token
    targets, mask = next_token_targets(batch["labels"])
    assert targets[0].tolist()[2:] == [10, 11, 2] and mask[0].tolist() == [False, False, True, True, True]
    assert mask[1].tolist() == [False, True, False, False, False] and targets[1, 1].item() == 12


def test_generated_batch_truncates_the_response_tail():
    batch = build_generated_batch([[5, 6, 7]], [[10, 11, END]], pad_id=PAD, max_length=4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 10]]
    assert batch["labels"].tolist() == [[M, M, M, 10]]
    with pytest.raises(ValueError, match="prompt length"):
        build_generated_batch([[1, 2, 3, 4, 5]], [[6]], pad_id=PAD, max_length=4)


def test_prompts_from_batch_by_hand():
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 9, 2, 0], [8, 4, 3, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]),
        "labels": torch.tensor([[M, M, M, 9, 2, M], [M, M, 3, M, M, M]]),
    }
    assert prompts_from_batch(batch) == [[5, 6, 7], [8, 4]]
    bad = dict(batch, labels=torch.tensor([[5, M, M, M, M, M], [M, M, 3, M, M, M]]))
    with pytest.raises(ValueError, match="row 0 has no prompt"):
        prompts_from_batch(bad)


def test_cut_at_end_keeps_the_first_end_token():
    assert cut_at_end([4, 9, END, 7, END, PAD], [END]) == [4, 9, END]
    assert cut_at_end([4, 9, 7], [END]) == [4, 9, 7]
    assert cut_at_end([13, 4], [END, 13]) == [13]


def test_layout_matches_encode_example_on_the_real_tokenizer(tokenizer):
    """A ground-truth example re-built from its own prompt/response ids gives the collate batch."""
    from adakd.data.instructions import Example
    from adakd.data.tokenize import encode_example
    from adakd.training.student_samples import end_token_ids

    enc = encode_example(tokenizer, Example("Say hi.", "", "Hi there!", "chat"), 64, 128)
    expected = collate([enc], tokenizer.pad_token_id)
    k = enc["prompt_length"]
    rebuilt = build_generated_batch([enc["input_ids"][:k]], [enc["input_ids"][k:]], tokenizer.pad_token_id, 128)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(rebuilt[key], expected[key]), key
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in end_token_ids(tokenizer)
    assert enc["labels"][-1] == enc["input_ids"][-1]  # the end token is a scored response token


# ------------------------------------------------------------------ sampling
def _greedy_reference(model, prompt, n):
    """Plain greedy decoding with full forwards, no cache, no padding (the slow obvious way)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def test_batched_cached_sampling_matches_a_plain_decode(student):
    """At a tiny temperature sampling is greedy: left padding and the KV cache must then give
    exactly the uncached, unpadded argmax continuation of every prompt."""
    prompts = [[5, 6, 7, 8, 9], [4, 3], [7, 7, 7]]
    out = sample_student_responses(
        student, None, prompts, max_new_tokens=6, temperature=1e-4, generator_seed=0, eos_ids=[V + 5], pad_id=PAD
    )  # an end that never occurs
    assert out == [_greedy_reference(student, p, 6) for p in prompts]


def test_sampling_stops_at_the_end_token_and_is_bounded(student):
    prompt = [4, 3]
    ref = _greedy_reference(student, prompt, 6)
    end = ref[2]
    expected = ref[: ref.index(end) + 1]
    out = sample_student_responses(
        student,
        None,
        [prompt, [7, 7, 7]],
        max_new_tokens=6,
        temperature=1e-4,
        generator_seed=0,
        eos_ids=[end],
        pad_id=PAD,
    )
    assert out[0] == expected and out[0][-1] == end
    assert 1 <= len(out[1]) <= 6 and end not in out[1][:-1]


def test_sampling_is_reproducible_and_leaves_rng_and_mode_alone(student):
    prompts = [[5, 6, 7], [8, 9, 10, 11], [12]]
    student.train()
    seen_modes = []
    hook = student.model.layers[0].register_forward_hook(lambda m, i, o: seen_modes.append(m.training))
    torch.manual_seed(123)
    before = torch.get_rng_state()
    try:
        a = sample_student_responses(
            student, None, prompts, max_new_tokens=8, generator_seed=11, eos_ids=[END], pad_id=PAD
        )
    finally:
        hook.remove()
    assert torch.equal(torch.get_rng_state(), before)
    assert student.training and all(m.training for m in student.modules())
    assert seen_modes and not any(seen_modes)  # eval mode (no dropout) while sampling
    b = sample_student_responses(student, None, prompts, max_new_tokens=8, generator_seed=11, eos_ids=[END], pad_id=PAD)
    c = sample_student_responses(student, None, prompts, max_new_tokens=8, generator_seed=12, eos_ids=[END], pad_id=PAD)
    assert a == b and a != c
    assert all(1 <= len(r) <= 8 for r in a)


def test_derive_seed_separates_streams():
    assert derive_seed(0, "gkd", 1) == derive_seed(0, "gkd", 1)
    assert len({derive_seed(0, "gkd", s) for s in range(100)}) == 100
    assert derive_seed(0, 1, 23) != derive_seed(0, 12, 3)  # the separator matters


# ------------------------------------------------------------------ replay buffer
def test_buffer_is_fifo_bounded_and_round_trips_through_json():
    buf = ReplayBuffer(3)
    for i in range(5):
        buf.add([i], [i + 10, END])
        assert len(buf) <= 3
    assert buf.full and len(buf) == 3
    state = json.loads(json.dumps(buf.state_dict()))
    assert state["items"] == [[[2], [12, END]], [[3], [13, END]], [[4], [14, END]]]  # the newest three
    picks = buf.sample(3, torch.Generator().manual_seed(5))
    assert sorted(p[0][0] for p in picks) == [2, 3, 4]  # without replacement
    with pytest.raises(ValueError, match="cannot sample 4"):
        buf.sample(4, torch.Generator())
    other = ReplayBuffer(3)
    other.load_state_dict(state)
    assert other.state_dict() == buf.state_dict()
    assert other.sample(2, torch.Generator().manual_seed(9)) == buf.sample(2, torch.Generator().manual_seed(9))
    other.add([5], [15])
    assert len(other) == 3 and other.state_dict()["items"][0] == [[3], [13, END]]


# ------------------------------------------------------------------ DistiLLM's adaptive probability
def test_adaptive_prob_rises_only_when_the_validation_loss_comes_back_up():
    sched = AdaptiveStudentDataProb(prob_step=0.1, threshold=0.1)
    # reference 2.0 (first loss); improvements and small rises leave φ alone
    for loss in (2.0, 1.8, 1.5, 1.55, 2.05):
        assert sched.update(loss) == 0.0
    assert sched.update(2.15) == pytest.approx(0.1)  # 2.15 >= 2.0 + 0.1: rise, reference 2.15
    assert sched.update(2.2) == pytest.approx(0.1)  # 2.2 < 2.25
    assert sched.update(2.3) == pytest.approx(0.2)  # 2.3 >= 2.25
    assert sched.update(float("nan")) == pytest.approx(0.2)
    assert sched.generation_prob(25, 100) == pytest.approx(0.2 * 0.75)
    assert sched.generation_prob(100, 100) == 0.0
    restored = AdaptiveStudentDataProb()
    restored.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    assert restored.prob == sched.prob and restored.reference == pytest.approx(2.3)
    for k in range(20):
        sched.update(3.0 + k)  # every loss 1.0 above the last: φ saturates at 1
    assert sched.prob == pytest.approx(1.0)


# ------------------------------------------------------------------ regimes
def test_ground_truth_regime_returns_the_batch_unchanged():
    regime = make_regime(_config(regime="ground_truth"), pad_id=PAD, eos_ids=[END])
    batch = _gt_batch()
    out, info = regime.prepare_batch(batch, 1, None, None)
    assert out is batch and info == {}


def test_gkd_lambda_zero_is_ground_truth_and_one_always_samples(student):
    batch = _gt_batch()
    zero = make_regime(_config(gkd_lambda=0.0), pad_id=PAD, eos_ids=[END])
    for step in range(1, 21):
        out, info = zero.prepare_batch(batch, step, student, None)
        assert out is batch and info["on_policy"] is False and info["gen_length"] is None
    one = make_regime(_config(gkd_lambda=1.0), pad_id=PAD, eos_ids=[END])
    for step in range(1, 4):
        out, info = one.prepare_batch(batch, step, student, None)
        assert info["on_policy"] is True and info["data_source"] == "student"
        assert prompts_from_batch(out) == [[5, 6, 7], [8, 4]]  # same prompts, new responses
        responses = [
            [t for t, y in zip(ids, lab, strict=True) if y != M]
            for ids, lab in zip(out["input_ids"].tolist(), out["labels"].tolist(), strict=True)
        ]
        assert info["gen_length"] == pytest.approx(sum(map(len, responses)) / 2)
        assert all(1 <= len(r) <= 5 for r in responses)


def test_gkd_coin_frequency_and_reproducibility(student):
    regime = make_regime(_config(gkd_lambda=0.3), pad_id=PAD, eos_ids=[END])
    coins = [
        float(torch.rand((), generator=regime.sampler.coin("gkd", s, 0), dtype=torch.float64)) < 0.3
        for s in range(1, 2001)
    ]
    assert 0.26 < sum(coins) / len(coins) < 0.34
    # a fresh regime (a resumed run) draws the same coins and the same samples at the same step
    step = next(s for s, c in zip(range(1, 2001), coins, strict=True) if c)
    torch.manual_seed(0)
    a, info_a = regime.prepare_batch(_gt_batch(), step, student, None)
    torch.manual_seed(99)  # the global RNG does not matter
    again = make_regime(_config(gkd_lambda=0.3), pad_id=PAD, eos_ids=[END])
    b, info_b = again.prepare_batch(_gt_batch(), step, student, None)
    assert info_a["on_policy"] and info_a == info_b
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert isinstance(regime, GKDRegime) and regime.state_dict() == {"kind": "gkd"}


def test_distillm_generates_until_full_then_replays_and_never_overflows(student):
    regime = make_regime(_config(regime="distillm", buffer_capacity=4, max_steps=4), pad_id=PAD, eos_ids=[END])
    assert isinstance(regime, DistiLLMRegime)
    batch = _gt_batch()
    out, info = regime.prepare_batch(batch, 1, student, None)
    assert out is batch and info["data_source"] == "ground_truth" and info["student_data_prob"] == 0.0
    regime.scheduler.prob = 1.0  # φ = 1; at t = T = 4 no fresh samples once the buffer is full
    sources = []
    for micro in range(5):
        out, info = regime.prepare_batch(batch, 4, student, None, micro=micro)
        sources.append(info["data_source"])
        assert info["buffer_size"] == len(regime.buffer) <= 4
        assert info["on_policy"] == (info["data_source"] == "student")
    assert sources == ["student", "student", "buffer", "buffer", "buffer"]
    stored = {tuple(p + r) for p, r in (tuple(x) for x in regime.buffer.state_dict()["items"])}
    replayed = {
        tuple(t for t, m in zip(ids, am, strict=True) if m)
        for ids, am in zip(out["input_ids"].tolist(), out["attention_mask"].tolist(), strict=True)
    }
    assert replayed <= stored
    # the whole state round-trips through JSON, and the restored regime replays identically
    state = json.loads(json.dumps(regime.state_dict()))
    again = make_regime(_config(regime="distillm", buffer_capacity=4, max_steps=4), pad_id=PAD, eos_ids=[END])
    again.load_state_dict(state)
    assert again.state_dict() == regime.state_dict()
    x, _ = regime.prepare_batch(batch, 4, student, None, micro=7)
    y, _ = again.prepare_batch(batch, 4, student, None, micro=7)
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_distillm_validation_loss_moves_phi_and_kind_mismatch_is_refused():
    regime = make_regime(_config(regime="distillm"), pad_id=PAD, eos_ids=[END])
    regime.on_validation_loss(3.0)
    regime.on_validation_loss(2.5)
    assert regime.student_data_prob == 0.0
    regime.on_validation_loss(3.2)
    assert regime.student_data_prob == pytest.approx(0.1)
    with pytest.raises(ValueError, match="regime 'distillm'"):
        make_regime(_config(regime="gkd"), pad_id=PAD, eos_ids=[END]).load_state_dict(regime.state_dict())
    assert isinstance(make_regime(_config(regime="ground_truth")), Regime)
    with pytest.raises(ValueError, match="eos_ids or a tokenizer"):
        make_regime(_config(regime="gkd"))


def test_seeded_generator_is_independent_of_the_global_rng():
    torch.manual_seed(1)
    a = torch.rand(3, generator=seeded_generator(0, "x"))
    torch.manual_seed(2)
    b = torch.rand(3, generator=seeded_generator(0, "x"))
    assert torch.equal(a, b)


def test_gkd_on_real_chat_prompts_through_the_trainer_call(tiny_pair):
    """Real tokenizer and chat template, a student over its 49,152 tokens, the trainer's keyword
    call: prompts kept token for token, samples end at <|im_end|> or at the bound."""
    from adakd.data.instructions import Example
    from adakd.data.tokenize import encode_example

    tok = tiny_pair.tokenizer
    examples = [Example("Say hi.", "", "Hi there!", "chat"), Example("Name a colour.", "", "Blue.", "chat")]
    encoded = [encode_example(tok, ex, 64, 96) for ex in examples]
    batch = collate(encoded, tok.pad_token_id)
    regime = make_regime(
        _config(gkd_lambda=1.0, max_prompt_length=64, max_length=96, gen_max_new_tokens=6),
        tokenizer=tok,
        pad_id=tok.pad_token_id,
    )
    out, info = regime.prepare(batch, step=1, student=tiny_pair.student, teacher=tiny_pair.teacher)
    assert info["on_policy"] is True
    assert prompts_from_batch(out) == [e["input_ids"][: e["prompt_length"]] for e in encoded]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    for ids, lab, e in zip(out["input_ids"].tolist(), out["labels"].tolist(), encoded, strict=True):
        response = [t for t, y in zip(ids, lab, strict=True) if y != M]
        assert 1 <= len(response) <= 6 and im_end not in response[:-1]
        assert lab[: e["prompt_length"]] == [M] * e["prompt_length"]
    assert tiny_pair.student.training


def test_merge_infos_over_micro_batches():
    gt = {
        "on_policy": False,
        "data_source": "ground_truth",
        "buffer_size": 4,
        "student_data_prob": 0.5,
        "gen_length": None,
    }
    fresh = {"on_policy": True, "data_source": "student", "buffer_size": 6, "student_data_prob": 0.5, "gen_length": 3.0}
    replay = {
        "on_policy": False,
        "data_source": "buffer",
        "buffer_size": 6,
        "student_data_prob": 0.5,
        "gen_length": 5.0,
    }
    assert merge_infos([{}, {}]) == {}
    assert merge_infos([gt, gt]) == gt
    assert merge_infos([gt, fresh, replay]) == {
        "on_policy": True,
        "data_source": "mixed",
        "buffer_size": 6,
        "student_data_prob": 0.5,
        "gen_length": 4.0,
    }


# ------------------------------------------------------------------ the trainer with a regime (smoke preset)
def _smoke(*overrides: str):
    from adakd.presets import resolve_preset

    return resolve_preset("smoke", ["probe_interval=0", "checkpoint_interval=0", "eval_examples=0", *overrides])


def _record_samples(monkeypatch):
    """Wrap the sampler the regimes call, recording (seed, samples) of every call."""
    import adakd.training.regimes as regimes_mod

    calls = []
    real = regimes_mod.sample_student_responses

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs["generator_seed"], out))
        return out

    monkeypatch.setattr(regimes_mod, "sample_student_responses", recording)
    return calls


def test_gkd_lambda_zero_run_equals_the_ground_truth_run(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from adakd.runs.rundir import RunDir
    from adakd.training.trainer import train

    calls = _record_samples(monkeypatch)
    train(_smoke("max_steps=3"), tmp_path / "gt")
    train(_smoke("max_steps=3", "regime=gkd", "gkd_lambda=0"), tmp_path / "gkd0")
    a, b = RunDir(tmp_path / "gt").read_metrics(), RunDir(tmp_path / "gkd0").read_metrics()
    keys = ("loss", "kd", "ce", "ratio", "n_valid", "grad_norm")
    assert [[m[k] for k in keys] for m in b] == [[m[k] for k in keys] for m in a]  # exactly
    assert all(m["on_policy"] is False and m["data_source"] == "ground_truth" for m in b)
    assert "on_policy" not in a[0]  # ground truth logs no regime fields
    assert calls == []
    wa = load_file(str(tmp_path / "gt" / "checkpoints" / "step-000003" / "model.safetensors"))
    wb = load_file(str(tmp_path / "gkd0" / "checkpoints" / "step-000003" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_resumed_gkd_run_reproduces_its_samples_and_losses(tmp_path, monkeypatch):
    import os
    import signal

    from adakd.runs.rundir import RunDir
    from adakd.training.trainer import resume, train

    config = _smoke("max_steps=6", "regime=gkd", "gkd_lambda=0.5", "gen_max_new_tokens=6")
    calls = _record_samples(monkeypatch)
    train(config, tmp_path / "straight")
    straight_calls = list(calls)
    calls.clear()

    def stop_at_3(record):
        if record["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: finish the step, checkpoint, stop

    train(config, tmp_path / "split", on_step=stop_at_3)
    assert RunDir(tmp_path / "split").read_status()["state"] == "stopped"
    resume(tmp_path / "split")
    a, b = RunDir(tmp_path / "straight").read_metrics(), RunDir(tmp_path / "split").read_metrics()
    assert [m["step"] for m in b] == list(range(1, 7))
    flags = [m["on_policy"] for m in a]
    assert True in flags and False in flags, "this seed should mix sampled and ground-truth steps"
    assert True in flags[3:], "some samples should be drawn after the resume"
    assert [m["on_policy"] for m in b] == flags
    assert [m["gen_length"] for m in b] == [m["gen_length"] for m in a]
    assert calls == straight_calls  # the same seeds and the same sampled tokens, before and after the resume
    assert [m["loss"] for m in b] == pytest.approx([m["loss"] for m in a], rel=1e-6, abs=1e-9)
