"""Token explorer: columns, ranges, groups, and every number recomputed independently.

Tiny random models (``tiny_pair``) for everything but one slow test on the real teacher
(the greedy-reply path). Expected values are recomputed in the tests from the models'
logits with the formulas of docs/method.md, not taken from the code under test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from adakd.data.instructions import Example
from adakd.data.tokenize import collate, encode_example
from adakd.models.loading import build_student, tiny_random_llama
from adakd.training.checkpoint import save_checkpoint
from analysis.explorer import (
    COLOR_LABELS,
    COLOR_OPTIONS,
    MAX_PROMPT_TOKENS,
    MAX_RESPONSE_TOKENS,
    TOKEN_COLUMNS,
    TOPK_COLUMNS,
    apply_settings,
    explore_prompt,
    explorer_tokens_figure,
    load_student_checkpoint,
    score_reply,
    teacher_reply,
    topk_figure,
)
from analysis.explorer_figures import CELL_CHARS, CELL_PX

PROMPT = "What is the capital of France?"
REFERENCE = "Paris is the capital of France, on the Seine."


@pytest.fixture(scope="module")
def pair(tokenizer):
    """Like conftest's tiny_pair, but shared by the read-only tests of this module."""
    from adakd.models.loading import ModelPair

    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    teacher = tiny_random_llama(len(tokenizer), layers=2, hidden=64, seed=1, **ids).eval().requires_grad_(False)
    student = tiny_random_llama(len(tokenizer), layers=2, hidden=32, seed=2, **ids).train()
    return ModelPair(teacher, student, tokenizer)


@pytest.fixture(scope="module")
def result(pair):
    return explore_prompt(
        pair.teacher, pair.student, pair.tokenizer, PROMPT, REFERENCE, ratio=0.5, c=0.5, base_temperature=1.0, top_k=4
    )


def _logits(model, ids, start):
    """Float64 logits predicting ids[start:], computed directly (full forward, no logits_to_keep)."""
    with torch.no_grad():
        z = model(input_ids=torch.tensor([ids])).logits[0].double()
    return z[start - 1 : len(ids) - 1]


# --------------------------------------------------------------------------- shape and ranges
def test_columns_rows_and_token_ids(result, tokenizer):
    df = result.tokens
    assert tuple(df.columns) == TOKEN_COLUMNS
    assert tuple(result.topk.columns) == TOPK_COLUMNS
    expected_ids = tokenizer(REFERENCE, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert df["token_id"].tolist() == expected_ids  # reference + end token, as training labels
    assert df["token_index"].tolist() == list(range(len(expected_ids)))
    assert df["position"].tolist() == list(range(len(result.prompt_ids), len(result.prompt_ids) + len(expected_ids)))
    assert result.response_source == "reference" and result.response == REFERENCE
    assert result.prompt_text.startswith("<|im_start|>") and PROMPT in result.prompt_text
    assert "".join(df["token_text"]) == REFERENCE + "<|im_end|>"


def test_ranges_and_bounds(result):
    df, c, base = result.tokens, 0.5, 1.0
    assert df["difficulty"].between(0, 1).all()
    sel = df[df["selected"]]
    assert sel["tau"].between(base * math.exp(-c) - 1e-6, base * math.exp(c) + 1e-6).all()
    assert df.loc[~df["selected"], "tau"].isna().all()
    assert df["tau_all"].between(base * math.exp(-c) - 1e-6, base * math.exp(c) + 1e-6).all()
    for col in ("entropy_student", "entropy_student_idts", "entropy_teacher"):
        assert (df[col] >= 0).all() and (df[col] <= math.log(49_152) + 1e-4).all()
    for col in [c for c in df.columns if c.startswith("div_")] + ["fkl", "rkl", "jsd"]:
        assert (df[col] >= -1e-6).all(), col
    assert df[["p_label_teacher", "p_label_student"]].stack().between(0, 1).all()


@pytest.mark.parametrize("ratio", [0.5, 0.3, 1.0])
def test_group_counts_at_ratio(pair, ratio):
    res = explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, REFERENCE, ratio=ratio, top_k=1)
    df = res.tokens
    n = len(df)
    k = max(1, math.floor(ratio * n + 1e-9))
    counts = df["group"].value_counts().to_dict()
    assert counts.get("hard", 0) == k // 2
    assert counts.get("mid", 0) == k - k // 2
    assert counts.get("easy", 0) == n - k
    assert (df["selected"] == df["group"].isin(["hard", "mid"])).all()
    # groups are ordered by difficulty: every hard ≥ every mid ≥ every easy
    by = df.groupby("group")["difficulty"]
    if "mid" in counts and "hard" in counts:
        assert by.min()["hard"] >= by.max()["mid"]
    if "easy" in counts:
        assert by.min()[("mid" if "mid" in counts else "hard")] >= by.max()["easy"]


# --------------------------------------------------------------------------- independent recomputation
def test_every_number_matches_a_direct_recomputation(result, pair):
    df = result.tokens
    ids = result.prompt_ids + result.response_ids
    zt = _logits(pair.teacher, ids, len(result.prompt_ids))
    zs = _logits(pair.student, ids, len(result.prompt_ids))
    p, q = torch.softmax(zt, -1), torch.softmax(zs, -1)
    labels = torch.tensor(result.response_ids)
    # Hellinger: (1/√2)·‖√p − √q‖₂
    hellinger = ((p.sqrt() - q.sqrt()).pow(2).sum(-1) / 2).sqrt().numpy()
    np.testing.assert_allclose(df["difficulty"], hellinger, atol=2e-5)
    fkl = (p * (p.log() - q.log())).sum(-1).numpy()
    rkl = (q * (q.log() - p.log())).sum(-1).numpy()
    np.testing.assert_allclose(df["fkl"], fkl, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(df["div_rkl"], rkl, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(df["div_tvd"], 0.5 * (p - q).abs().sum(-1).numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(df["ce"], -q.log().gather(-1, labels[:, None]).squeeze(-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(df["p_label_teacher"], p.gather(-1, labels[:, None]).squeeze(-1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(df["p_label_student"], q.gather(-1, labels[:, None]).squeeze(-1).numpy(), rtol=1e-4)
    h_s = -(q * q.log()).sum(-1).numpy()
    np.testing.assert_allclose(df["entropy_student"], h_s, rtol=1e-4)
    np.testing.assert_allclose(df["entropy"], h_s, rtol=1e-4)
    np.testing.assert_allclose(df["entropy_teacher"], -(p * p.log()).sum(-1).numpy(), rtol=1e-4)

    # IDTS by hand: lower median m, ŝ = tanh(log(max(s/m, 1e-8))), τ = exp(−c·ŝ)
    def idts(s):
        m = sorted(s)[(len(s) - 1) // 2]
        return np.array([math.exp(-0.5 * math.tanh(math.log(max(x / m, 1e-8)))) for x in s])

    s_all = df["difficulty"].to_numpy()
    np.testing.assert_allclose(df["tau_all"], idts(s_all), rtol=1e-5)
    sel = df["selected"].to_numpy()
    np.testing.assert_allclose(df.loc[sel, "tau"], idts(s_all[sel]), rtol=1e-5)
    tau_all = torch.tensor(df["tau_all"].to_numpy())
    q_idts = torch.softmax(zs / tau_all[:, None], -1)
    np.testing.assert_allclose(df["entropy_student_idts"], -(q_idts * q_idts.log()).sum(-1).numpy(), rtol=1e-4)
    assert (df["hard"] == (s_all > sorted(s_all)[(len(s_all) - 1) // 2])).all()


def test_indicator_columns_equal_adakd_token_difficulty(result, pair):
    from adakd import token_difficulty

    ids = result.prompt_ids + result.response_ids
    zt = _logits(pair.teacher, ids, len(result.prompt_ids)).float()
    zs = _logits(pair.student, ids, len(result.prompt_ids)).float()
    labels = torch.tensor(result.response_ids)
    for name in ("hellinger", "fkl", "rkl", "jsd", "ce", "entropy"):
        expected = token_difficulty(zs, zt, name, labels=labels if name == "ce" else None).numpy()
        column = "difficulty" if name == "hellinger" else name
        np.testing.assert_allclose(result.tokens[column], expected, rtol=1e-4, atol=1e-6, err_msg=name)


def test_matches_the_training_probe_on_the_same_example(result, pair):
    """The explorer and adakd.training.probes.probe_tokens (the run-time probe) agree token by token."""
    from adakd.training.probes import probe_tokens

    tok = pair.tokenizer
    encoded = encode_example(tok, Example(PROMPT, "", REFERENCE), 256, 512)
    batch = collate([encoded], tok.pad_token_id)
    probe = probe_tokens(pair.student, pair.teacher, batch, tok, step=0, ratio=0.5, c=0.5, base_temperature=1.0)
    ours = result.tokens
    assert probe["token_id"].tolist() == ours["token_id"].tolist()
    assert probe["position"].tolist() == ours["position"].tolist()
    assert probe["group"].tolist() == ours["group"].tolist()
    for col in (
        "difficulty",
        "tau",
        "tau_all",
        "entropy_student",
        "entropy_student_idts",
        "entropy_teacher",
        "p_label_teacher",
        "p_label_student",
    ):
        np.testing.assert_allclose(ours[col], probe[col], rtol=1e-4, atol=1e-6, err_msg=col)
    assert probe["top1_teacher"].tolist() == ours["top1_teacher"].tolist()


def test_topk_rows(result):
    topk, tokens = result.topk, result.tokens
    assert len(topk) == 2 * 4 * len(tokens)
    for (i, model), g in topk.groupby(["token_index", "model"]):
        assert g["rank"].tolist() == [1, 2, 3, 4]
        assert (np.diff(g["prob"]) <= 1e-12).all() and g["prob"].sum() <= 1 + 1e-6
        assert g["is_label"].tolist() == (g["token_id"] == tokens.loc[i, "token_id"]).tolist()
        assert g.iloc[0]["token_text"] == tokens.loc[i, f"top1_{model}"]
        if g["is_label"].any():  # the label's probability shows up identically in both frames
            assert g.loc[g["is_label"], "prob"].iloc[0] == pytest.approx(tokens.loc[i, f"p_label_{model}"], rel=1e-5)


def test_models_and_rng_are_left_as_found(tiny_pair):
    state = torch.random.get_rng_state()
    assert tiny_pair.student.training and not tiny_pair.teacher.training
    explore_prompt(tiny_pair.teacher, tiny_pair.student, tiny_pair.tokenizer, PROMPT, max_new_tokens=4)
    assert tiny_pair.student.training and not tiny_pair.teacher.training
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(p.grad is None for p in tiny_pair.student.parameters())


# --------------------------------------------------------------------------- greedy path and errors
def test_greedy_reply_follows_the_teachers_argmax(pair):
    res = explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, reference=None, max_new_tokens=6, top_k=3)
    df = res.tokens
    assert res.response_source == "teacher_greedy"
    assert 1 <= len(df) <= 6
    # greedy: every response token is the teacher's top-1 at its position
    assert (df["token_text"] == df["top1_teacher"]).all()
    top1 = res.topk[(res.topk["model"] == "teacher") & (res.topk["rank"] == 1)]
    assert top1["is_label"].all()
    np.testing.assert_allclose(top1["prob"].to_numpy(), df["p_label_teacher"].to_numpy(), rtol=1e-5)


def test_reused_reply_scores_the_same_as_generating_it(pair, monkeypatch):
    first = explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, max_new_tokens=6, ratio=0.5, c=0.5)
    reply = teacher_reply(pair.teacher, pair.student, pair.tokenizer, PROMPT, max_new_tokens=6)
    assert reply == first.response_ids
    # With the reply given, nothing is generated: a generate() call would fail the test.
    monkeypatch.setattr(type(pair.teacher), "generate", lambda *a, **k: pytest.fail("regenerated the reply"))
    again = explore_prompt(
        pair.teacher, pair.student, pair.tokenizer, PROMPT, max_new_tokens=6, ratio=0.5, c=0.5, reply_ids=reply
    )
    assert again.response_source == "teacher_greedy" and again.response == first.response
    pd.testing.assert_frame_equal(again.tokens, first.tokens)
    moved = explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, ratio=1.0, c=1.5, reply_ids=reply)
    np.testing.assert_allclose(moved.tokens["difficulty"], first.tokens["difficulty"], rtol=1e-6)
    assert moved.tokens["selected"].all() and not first.tokens["selected"].all()


def test_settings_apply_to_one_scoring_without_a_forward_pass(pair, monkeypatch):
    """What the dashboard does when r or c move: score once, apply other settings with the
    models gone; τ and the entropy at τ_all match a float64 recomputation from the logits."""
    scored = score_reply(pair.teacher, pair.student, pair.tokenizer, PROMPT, REFERENCE, top_k=3)
    ids = scored.prompt_ids + scored.response_ids
    zt = _logits(pair.teacher, ids, len(scored.prompt_ids))
    zs = _logits(pair.student, ids, len(scored.prompt_ids))
    for model in (pair.teacher, pair.student):  # any forward pass from here on fails the test
        monkeypatch.setattr(type(model), "__call__", lambda *a, **k: pytest.fail("ran a forward pass"))
    for ratio, c, base in ((0.5, 0.5, 1.0), (1.0, 1.5, 1.0), (0.3, 0.0, 2.0)):
        df = apply_settings(scored, ratio=ratio, c=c, base_temperature=base).tokens
        d = torch.tensor(df["difficulty"].to_numpy(), dtype=torch.float64)
        # IDTS over all tokens (docs/method.md): τ = τ₀·exp(−c·tanh(log(d / median))), lower median
        tau_all = base * torch.exp(-c * torch.tanh(torch.log(d / d.median())))
        np.testing.assert_allclose(df["tau_all"], tau_all.numpy(), rtol=1e-5)
        logq = torch.log_softmax(zs / tau_all[:, None], -1)
        np.testing.assert_allclose(
            df["entropy_student_idts"], -(logq.exp() * logq).sum(-1).numpy(), rtol=1e-3, atol=1e-5
        )
        assert int(df["selected"].sum()) == max(1, math.floor(ratio * len(df) + 1e-9))
    np.testing.assert_allclose(
        df["entropy_teacher"],
        -(torch.softmax(zt, -1) * torch.log_softmax(zt, -1)).sum(-1).numpy(),
        rtol=1e-3,
        atol=1e-5,
    )


def test_reply_ids_are_checked(pair):
    with pytest.raises(ValueError, match="either a reference reply or the teacher's reply ids"):
        explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, REFERENCE, reply_ids=[1, 2])
    with pytest.raises(ValueError, match="reply_ids is empty"):
        explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, reply_ids=[])


def test_empty_reference_means_greedy(pair):
    res = explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, "  ", max_new_tokens=2, top_k=1)
    assert res.response_source == "teacher_greedy"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"ratio": 0.0}, "ratio r must be in"),
        ({"c": -1.0}, "c must be >= 0"),
        ({"top_k": 0}, "top_k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": MAX_RESPONSE_TOKENS + 1}, "max_new_tokens"),
    ],
)
def test_bad_arguments(pair, kwargs, message):
    args = {"prompt": PROMPT, **kwargs}
    with pytest.raises(ValueError, match=message):
        explore_prompt(pair.teacher, pair.student, pair.tokenizer, **args)


def test_prompt_or_reference_past_the_bounds_is_refused(pair):
    long_prompt = "word " * (MAX_PROMPT_TOKENS + 10)
    with pytest.raises(ValueError, match=rf"the prompt is \d+ tokens .*at most {MAX_PROMPT_TOKENS}"):
        explore_prompt(pair.teacher, pair.student, pair.tokenizer, long_prompt, REFERENCE)
    with pytest.raises(ValueError, match=rf"the reference is \d+ tokens .*at most {MAX_RESPONSE_TOKENS}"):
        explore_prompt(pair.teacher, pair.student, pair.tokenizer, PROMPT, "word " * (MAX_RESPONSE_TOKENS + 5))


def test_prompt_past_a_small_model_context_is_refused(tokenizer):
    teacher = tiny_random_llama(len(tokenizer), layers=1, hidden=32, seed=1, max_position_embeddings=48).eval()
    student = tiny_random_llama(len(tokenizer), layers=1, hidden=32, seed=2, max_position_embeddings=48).eval()
    with pytest.raises(ValueError, match="model context 48"):
        explore_prompt(teacher, student, tokenizer, "word " * 40, REFERENCE)
    with pytest.raises(ValueError, match="over the model's context of 48"):
        explore_prompt(teacher, student, tokenizer, "Hi", "word " * 40)


# --------------------------------------------------------------------------- figures
def test_token_strip_figure(result):
    fig = explorer_tokens_figure(result, color_by="difficulty")
    heat = fig.data[0]
    z = np.array(heat.z, dtype=float)
    assert np.isfinite(z).sum() == len(result.tokens)
    np.testing.assert_allclose(np.sort(z[np.isfinite(z)]), np.sort(result.tokens["difficulty"]))
    index = np.array(heat.customdata).ravel()
    assert sorted(index[index >= 0]) == list(range(len(result.tokens)))  # a click maps to a token row
    hover = [h for row in heat.hovertext for h in row if h]
    assert len(hover) == len(result.tokens)
    assert all("group:" in h and "teacher top-k" in h and "student top-k" in h and "τ" in h for h in hover)
    groups = explorer_tokens_figure(result, color_by="group").data[0]
    values = {v for row in groups.z for v in row if v is not None and not np.isnan(v)}
    assert values <= {0.0, 1.0, 2.0}
    with pytest.raises(ValueError, match="color_by"):
        explorer_tokens_figure(result, color_by="nope")
    assert set(COLOR_LABELS) == set(COLOR_OPTIONS) and "entropy_after" not in " ".join(COLOR_LABELS.values())
    assert len(fig.data) == 1  # every token has a difficulty: no grey layer, no legend entry


def test_long_tokens_are_cut_to_their_cell_and_whole_in_the_hover(result):
    """A token longer than a cell holds is cut with an ellipsis (an export would otherwise draw it
    over its neighbours); the figure is wide enough for its cells; the hover keeps the text."""
    tokens = result.tokens.copy()
    tokens.loc[0, "token_text"] = " photosynthetically"
    fig = explorer_tokens_figure(dataclasses.replace(result, tokens=tokens), tokens_per_row=10)
    heat = fig.data[0]
    cells = [t for row in heat.text for t in row if t]
    assert all(len(t) <= CELL_CHARS for t in cells)
    assert heat.text[0][0] == "␣photosyn…"
    assert "␣photosynthetically" in heat.hovertext[0][0]
    assert fig.layout.width >= 10 * CELL_PX


def test_tokens_without_a_value_are_grey_with_a_legend_entry(result):
    """Colour by τ: LATF's unselected tokens have none; they are drawn grey, with their text."""
    unselected = int((~result.tokens["selected"]).sum())
    assert 0 < unselected < len(result.tokens)
    fig = explorer_tokens_figure(result, color_by="tau")
    heat, grey, legend = fig.data
    assert np.isfinite(np.array(heat.z, dtype=float)).sum() == len(result.tokens) - unselected
    grey_z = np.array(grey.z, dtype=float)
    assert (grey_z == 0).sum() == unselected and not grey.showscale
    assert sum(bool(t) for row in grey.text for t in row) == unselected  # the token text stays readable
    assert legend.name == "not selected by LATF (no τ)" and legend.showlegend
    assert COLOR_LABELS["tau"] in fig.layout.title.text


def test_topk_figure(result):
    fig = topk_figure(result, 2)
    assert [t.name for t in fig.data] == ["teacher top-k", "student top-k"]
    assert all(len(t.x) == 4 for t in fig.data)
    expected = result.topk[(result.topk["token_index"] == 2) & (result.topk["model"] == "student")]["prob"]
    np.testing.assert_allclose(fig.data[1].x, expected)
    with pytest.raises(ValueError, match="token_index"):
        topk_figure(result, len(result.tokens))


# --------------------------------------------------------------------------- students of a run
def _fake_run(tmp_path, seed=3):
    run = tmp_path / "run"
    run.mkdir()
    config = {"teacher": "tiny-random", "student": "tiny-random", "seed": seed}
    (run / "config.json").write_text(json.dumps({"format": 1, "config": config, "seed": seed}))
    return run


def test_load_student_at_init_and_at_checkpoints(tmp_path, tokenizer):
    from adakd.config import RunConfig
    from adakd.training import runsetup

    teacher = tiny_random_llama(len(tokenizer), **runsetup.TINY_TEACHER).eval()
    run = _fake_run(tmp_path, seed=3)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        load_student_checkpoint(run, teacher=teacher)
    init = load_student_checkpoint(run, step=0, teacher=teacher)
    config = RunConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
    _, fresh, _ = runsetup.build_models(config, torch.device("cpu"))  # the student training starts from
    for (name, a), b in zip(init.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not init.training and not any(p.requires_grad for p in init.parameters())

    trained = copy.deepcopy(fresh)
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    for step in (5, 10):
        with torch.no_grad():
            for p in trained.parameters():
                p.add_(0.01 * step)
        save_checkpoint(run / "checkpoints", step, trained, optimizer, scheduler, {})
    latest = load_student_checkpoint(run, teacher=teacher)
    at5 = load_student_checkpoint(run, step=5, teacher=teacher)
    emb = "model.embed_tokens.weight"
    assert torch.allclose(latest.state_dict()[emb], fresh.state_dict()[emb] + 0.15)  # 0.05 + 0.10
    assert torch.allclose(at5.state_dict()[emb], fresh.state_dict()[emb] + 0.05)
    with pytest.raises(ValueError, match="available: 5, 10"):
        load_student_checkpoint(run, step=7, teacher=teacher)
    # the explorer works with a loaded student
    res = explore_prompt(teacher, at5, tokenizer, PROMPT, REFERENCE)
    assert len(res.tokens) > 0


def test_load_student_needs_a_config(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        load_student_checkpoint(tmp_path, step=0)


# --------------------------------------------------------------------------- the real teacher
@pytest.mark.slow
def test_real_teacher_greedy_reply_and_subset_student(real_teacher):
    teacher, tok = real_teacher
    student = build_student(teacher)  # the default 6-layer subset, at initialisation
    res = explore_prompt(teacher, student, tok, PROMPT, max_new_tokens=12, top_k=3)
    assert res.response_source == "teacher_greedy"
    assert "Paris" in res.response
    df = res.tokens
    assert 1 <= len(df) <= 12 and (df["token_text"] == df["top1_teacher"]).all()
    assert df["difficulty"].between(0, 1).all()
    # the pruned student disagrees with the teacher much more than the teacher with itself
    same = explore_prompt(teacher, teacher, tok, PROMPT, res.response, top_k=3).tokens
    assert same["difficulty"].max() < 1e-3 and df["difficulty"].mean() > 0.1
