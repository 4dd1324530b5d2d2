"""Probes: tokens.parquet / gradients.parquet rows against independent recomputations.

Models are the tiny random pair of conftest (real SmolLM2 tokenizer); the references below are
written from the formulas of docs/method.md in float64 with plain torch, not with adakd's functions.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from adakd.data.instructions import Example
from adakd.data.tokenize import collate, encode_example
from adakd.training.probes import (
    GRADIENT_COLUMNS,
    TOKEN_COLUMNS,
    group_labels,
    probe_gradient_groups,
    probe_tokens,
    teacher_valid_logits,
)

EXAMPLES = [
    Example("What is the capital of France?", "", "The capital of France is Paris.", "geo"),
    Example("Say hello.", "", "Hello there, friend!", "chat"),
    Example("Summarise the text.", "Cats sleep a lot. They also purr.", "Cats sleep and purr.", "sum"),
]


@pytest.fixture
def batch(tokenizer):
    encoded = [encode_example(tokenizer, ex, 64, 96) for ex in EXAMPLES]
    return collate(encoded, tokenizer.pad_token_id)


def _valid_logits64(model, batch):
    """[N, V] float64 logits of the valid next-token positions, targets [N], (row, col) of each."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return logits[:, :-1][mask].double(), labels[mask], rows, cols


def _idts64(s, base, c):
    m = torch.sort(s).values[(s.numel() - 1) // 2]  # lower median
    if m <= 0:
        return torch.full_like(s, base)
    s_hat = torch.tanh(torch.log(torch.clamp(s / m, min=1e-8)))
    return base * torch.exp(-c * s_hat)


def _entropy64(z):
    logp = torch.log_softmax(z, -1)
    return -(logp.exp() * logp).sum(-1)


# ---------------------------------------------------------------------- groups (unit)
def test_group_counts_are_top_half_of_selected_then_rest():
    d = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.05])
    selected, groups = group_labels(d, 0.5)  # k = 5 -> hard = 5 // 2 = 2, mid = 3, easy = 5
    assert selected.tolist() == [True, False, True, True, False, True, False, True, False, False]
    assert [i for i, g in enumerate(groups) if g == "hard"] == [0, 5]  # 0.9, 0.8
    assert [i for i, g in enumerate(groups) if g == "mid"] == [2, 3, 7]  # 0.5, 0.7, 0.6
    assert (groups == "easy").sum() == 5
    _, groups = group_labels(d, 1.0)  # k = N: no easy group
    assert (groups == "easy").sum() == 0 and (groups == "hard").sum() == 5
    _, groups = group_labels(d, 0.1)  # k = 1: 1 // 2 = 0 hard, the single selected token is mid
    assert groups.tolist().count("mid") == 1 and groups[0] == "mid" and "hard" not in groups
    _, groups = group_labels(torch.tensor([0.5] * 4), 0.5)  # ties: by position
    assert groups.tolist() == ["hard", "mid", "easy", "easy"]


# ---------------------------------------------------------------------- tokens.parquet
@pytest.mark.parametrize("ratio, c, inverse", [(0.5, 0.5, False), (1.0, 0.3, False), (0.3, 0.5, True)])
def test_probe_tokens_match_direct_recomputation(tiny_pair, batch, ratio, c, inverse):
    student, teacher, tok = tiny_pair.student, tiny_pair.teacher, tiny_pair.tokenizer
    df = probe_tokens(student, teacher, batch, tok, step=7, ratio=ratio, c=c, base_temperature=1.5, inverse=inverse)
    assert list(df.columns) == list(TOKEN_COLUMNS)
    assert {k: str(df[k].dtype) for k in ("step", "difficulty", "selected", "token_id")} == {
        "step": "int64",
        "difficulty": "float64",
        "selected": "bool",
        "token_id": "int64",
    }

    _assert_rows_match(df, student, teacher, batch, tok, ratio=ratio, c=c, base=1.5, inverse=inverse)
    assert (df["step"] == 7).all()
    assert df["token_text"].iloc[-1] == "<|im_end|>"  # the end token is a response token


def _assert_rows_match(df, student, teacher, batch, tok, *, ratio, c, base, inverse=False):
    """Every column of probe_tokens rows against a float64 recomputation from the models."""
    zs, ys, rows, cols = _valid_logits64(student, batch)
    zt, _, _, _ = _valid_logits64(teacher, batch)
    n = ys.numel()
    assert len(df) == n == int((batch["labels"][:, 1:] != -100).sum())
    # identity columns
    assert (df["ratio"] == ratio).all()
    assert df["example"].tolist() == rows.tolist()
    assert df["position"].tolist() == (cols + 1).tolist()
    assert df["token_id"].tolist() == ys.tolist()
    ids = batch["input_ids"]
    assert all(ids[e, p] == t for e, p, t in zip(df["example"], df["position"], df["token_id"], strict=True))
    for e in range(ids.shape[0]):  # token_index counts 0, 1, 2, ... within each response
        assert df.loc[df["example"] == e, "token_index"].tolist() == list(range((df["example"] == e).sum()))
    assert df["token_text"].tolist() == [tok.decode([i]) for i in ys.tolist()]

    # difficulty: Hellinger at τ = 1
    p, q = torch.softmax(zt, -1), torch.softmax(zs, -1)
    hell = torch.sqrt(0.5 * ((p.sqrt() - q.sqrt()) ** 2).sum(-1))
    np.testing.assert_allclose(df["difficulty"], hell.numpy(), rtol=1e-4, atol=1e-6)
    # selection and groups at r (k = max(1, floor(r N)))
    k = max(1, math.floor(ratio * n + 1e-9))
    order = np.argsort(-hell.numpy(), kind="stable")
    assert df["selected"].sum() == k and set(np.flatnonzero(df["selected"])) == set(order[:k])
    assert set(np.flatnonzero(df["group"] == "hard")) == set(order[: k // 2])
    assert set(np.flatnonzero(df["group"] == "mid")) == set(order[k // 2 : k])
    assert (df["group"] == "easy").sum() == n - k
    # τ over the selected tokens; τ_all over all; hard by the median of all
    sign = -1.0 if inverse else 1.0
    sel = torch.tensor(df["selected"].to_numpy())
    tau_sel = _idts64(hell[sel], base, sign * c)
    np.testing.assert_allclose(df["tau"][df["selected"]], tau_sel.numpy(), rtol=1e-4)
    assert df["tau"][~df["selected"]].isna().all()
    tau_all = _idts64(hell, base, sign * c)
    np.testing.assert_allclose(df["tau_all"], tau_all.numpy(), rtol=1e-4)
    median = torch.sort(hell).values[(n - 1) // 2]
    assert df["hard"].tolist() == (hell > median).tolist()
    # entropies (nats), label probabilities, top-1
    np.testing.assert_allclose(df["entropy_student"], _entropy64(zs).numpy(), rtol=1e-4)
    np.testing.assert_allclose(df["entropy_teacher"], _entropy64(zt).numpy(), rtol=1e-4)
    np.testing.assert_allclose(df["entropy_student_idts"], _entropy64(zs / tau_all[:, None]).numpy(), rtol=1e-4)
    np.testing.assert_allclose(df["p_label_student"], q.gather(-1, ys[:, None]).squeeze(-1).numpy(), rtol=1e-4)
    np.testing.assert_allclose(df["p_label_teacher"], p.gather(-1, ys[:, None]).squeeze(-1).numpy(), rtol=1e-4)
    assert df["top1_student"].tolist() == [tok.decode([i]) for i in zs.argmax(-1).tolist()]
    assert df["top1_teacher"].tolist() == [tok.decode([i]) for i in zt.argmax(-1).tolist()]


def test_idts_off_gives_base_temperature_and_hard_tokens_get_low_tau(tiny_pair, batch):
    with torch.no_grad():  # a random student is near uniform; sharpen it so entropies differ visibly
        tiny_pair.student.model.norm.weight.mul_(40.0)
    df = probe_tokens(
        tiny_pair.student, tiny_pair.teacher, batch, tiny_pair.tokenizer, step=0, ratio=0.5, c=0.0, base_temperature=2.0
    )
    assert np.allclose(df["tau"].dropna(), 2.0) and np.allclose(df["tau_all"], 2.0)
    df = probe_tokens(
        tiny_pair.student, tiny_pair.teacher, batch, tiny_pair.tokenizer, step=0, ratio=0.5, c=0.5, base_temperature=1.0
    )
    assert (df.loc[df["hard"], "tau_all"] < 1.0).all() and (df.loc[~df["hard"], "tau_all"] >= 1.0).all()
    # Fig. 4's shape: hard tokens are sharpened, so their entropy drops under IDTS
    hard = df[df["hard"]]
    assert (hard["entropy_student_idts"] < hard["entropy_student"]).all()


def test_gradient_groups_on_the_real_vocabulary(tiny_pair, batch):
    df = probe_gradient_groups(tiny_pair.student, tiny_pair.teacher, batch, step=0, ratio=0.7, divergence="rkl")
    assert set(df["split"]) == {"current", "paper"}
    for _, part in df.groupby("split"):
        assert part["norm_share"].sum() == pytest.approx(100.0)
        assert (part["cos_total"] >= 0).all() and part["cos_sft"].between(-1, 1).all()
        assert part["n_tokens"].sum() == int((batch["labels"][:, 1:] != -100).sum())


def test_probe_on_batch_without_response_tokens_is_empty_with_columns(tiny_pair, batch):
    empty = {**batch, "labels": torch.full_like(batch["labels"], -100)}
    df = probe_tokens(
        tiny_pair.student, tiny_pair.teacher, empty, tiny_pair.tokenizer, step=0, ratio=0.5, c=0.5, base_temperature=1.0
    )
    assert df.empty and list(df.columns) == list(TOKEN_COLUMNS)
    g = probe_gradient_groups(tiny_pair.student, tiny_pair.teacher, empty, step=0, ratio=0.5, divergence="rkl")
    assert g.empty and list(g.columns) == list(GRADIENT_COLUMNS)


def test_cached_teacher_logits_give_the_same_rows(tiny_pair, batch):
    """The trainer computes the frozen teacher's logits on its fixed batches once."""
    student, teacher, tok = tiny_pair.student, tiny_pair.teacher, tiny_pair.tokenizer
    cached = teacher_valid_logits(teacher, batch)
    assert cached.shape == (int((batch["labels"][:, 1:] != -100).sum()), len(tok))
    kwargs = dict(step=1, ratio=0.5, c=0.5, base_temperature=1.0)
    pd.testing.assert_frame_equal(
        probe_tokens(student, teacher, batch, tok, **kwargs, teacher_logits=cached),
        probe_tokens(student, teacher, batch, tok, **kwargs),
    )
    pd.testing.assert_frame_equal(
        probe_gradient_groups(student, teacher, batch, step=1, ratio=0.5, divergence="rkl", teacher_logits=cached),
        probe_gradient_groups(student, teacher, batch, step=1, ratio=0.5, divergence="rkl"),
    )
    with pytest.raises(ValueError, match="teacher_logits has 3 rows.*teacher_valid_logits"):
        probe_tokens(student, teacher, batch, tok, **kwargs, teacher_logits=cached[:3])


def test_bad_input_says_what_to_fix(tiny_pair, batch):
    with pytest.raises(ValueError, match="ratio must be in"):
        probe_tokens(
            tiny_pair.student,
            tiny_pair.teacher,
            batch,
            tiny_pair.tokenizer,
            step=0,
            ratio=0.0,
            c=0.5,
            base_temperature=1.0,
        )
    with pytest.raises(ValueError, match="missing 'labels'.*collate"):
        probe_gradient_groups(
            tiny_pair.student,
            tiny_pair.teacher,
            {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]},
            step=0,
            ratio=0.5,
            divergence="rkl",
        )


# ---------------------------------------------------------------------- gradients.parquet
def _naive_group_gradients(student, teacher, batch, ratio, name, params):
    """Fig. 1 bottom by definition: one autograd call per group and loss, on the full [N, V] leaf."""
    from adakd.method.divergences import divergence

    zs, ys, _, _ = _valid_logits64(student, batch)
    zt, _, _, _ = _valid_logits64(teacher, batch)
    hell = torch.sqrt(0.5 * ((torch.softmax(zt, -1).sqrt() - torch.softmax(zs, -1).sqrt()) ** 2).sum(-1))
    n = ys.numel()
    k = max(1, math.floor(ratio * n + 1e-9))
    order = torch.from_numpy(np.argsort(-hell.numpy(), kind="stable").copy())
    members = {"hard": order[: k // 2], "mid": order[k // 2 : k], "easy": order[k:]}
    z = zs.clone().requires_grad_(True)

    def grad(loss):
        return torch.autograd.grad(loss, z, retain_graph=True)[0].flatten()

    d = divergence(name, z, zt, 1.0, **params)
    ce = F.cross_entropy(z, ys, reduction="none")
    g_full = grad(d.mean())
    out = {}
    for group, idx in members.items():
        if idx.numel():
            g_d, g_s = grad(d[idx].mean()), grad(ce[idx].mean())
            out[group] = (
                F.cosine_similarity(g_d, g_s, dim=0).item(),
                F.cosine_similarity(g_d, g_full, dim=0).item(),
                g_d.norm().item(),
                idx.numel(),
            )
    total = sum(v[2] for v in out.values())
    return {g: (*v, 100 * v[2] / total) for g, v in out.items()}


@pytest.fixture
def small_vocab():
    """A tiny pair over a 97-token vocabulary and a hand-built batch (prompts, responses,
    right padding): the per-group autograd reference stays cheap at this size."""
    from adakd.models.loading import tiny_random_llama

    teacher = tiny_random_llama(97, layers=1, hidden=32, seed=5).eval()
    student = tiny_random_llama(97, layers=1, hidden=16, seed=6).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 97, (3, 20), generator=g)
    attention = torch.ones_like(ids)
    labels = ids.clone()
    for row, (prompt, length) in enumerate(((5, 20), (8, 16), (3, 11))):
        labels[row, :prompt] = -100
        labels[row, length:] = -100
        attention[row, length:] = 0
    return student, teacher, {"input_ids": ids, "attention_mask": attention, "labels": labels}


@pytest.mark.parametrize("name, params", [("rkl", {}), ("fkl", {}), ("jsd", {"lam": 0.5}), ("akl", {}), ("tvd", {})])
@pytest.mark.parametrize("ratio", [0.5, 0.8, 1.0])
def test_gradient_groups_match_per_group_autograd(small_vocab, name, params, ratio):
    student, teacher, batch = small_vocab
    df = probe_gradient_groups(student, teacher, batch, step=3, ratio=ratio, divergence=name, divergence_params=params)
    assert list(df.columns) == list(GRADIENT_COLUMNS)
    for split, r in (("current", ratio), ("paper", 0.5)):
        part = df[df["split"] == split].set_index("group")
        expected = _naive_group_gradients(student, teacher, batch, r, name, params)
        assert list(part.index) == [g for g in ("hard", "mid", "easy") if g in expected]
        assert (part["ratio"] == r).all() and (part["step"] == 3).all()
        for group, (cos_sft, cos_total, norm, count, share) in expected.items():
            row = part.loc[group]
            assert row["n_tokens"] == count
            assert row["cos_sft"] == pytest.approx(cos_sft, abs=1e-5)
            assert row["cos_total"] == pytest.approx(cos_total, abs=1e-5)
            assert row["grad_norm"] == pytest.approx(norm, rel=1e-4)
            assert row["norm_share"] == pytest.approx(share, abs=1e-3)
        # the math: shares sum to 100, cosines in [-1, 1], cos with the total gradient >= 0
        assert part["norm_share"].sum() == pytest.approx(100.0)
        assert part[["cos_sft", "cos_total"]].abs().le(1 + 1e-9).all().all()
        assert (part["cos_total"] >= 0).all()
    if ratio == 1.0:
        assert "easy" not in set(df.loc[df["split"] == "current", "group"])
    n = int((batch["labels"][:, 1:] != -100).sum())
    assert n == 15 + 8 + 8  # rows: labels at 5..19, 8..15, 3..10
    paper = df[df["split"] == "paper"]
    assert paper["n_tokens"].tolist() == [(n // 2) // 2, n // 2 - (n // 2) // 2, n - n // 2]


# ---------------------------------------------------------------------- no side effects
def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(name, m.training) for name, m in model.named_modules()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    )


def test_probes_leave_modes_grads_weights_and_rng_untouched(small_vocab, tokenizer):
    student, teacher, batch = small_vocab
    student.train()
    student.model.layers[0].eval()  # a mixed-mode model must come back mixed
    loss = student(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    loss.backward()  # some parameters hold a gradient
    student.model.norm.weight.grad = None  # and some do not
    before_s, before_t = _snapshot(student), _snapshot(teacher)
    rng = torch.get_rng_state()
    probe_tokens(student, teacher, batch, tokenizer, step=1, ratio=0.5, c=0.5, base_temperature=1.0)
    probe_gradient_groups(student, teacher, batch, step=1, ratio=0.5, divergence="rkl")
    assert torch.equal(torch.get_rng_state(), rng)
    for before, model in ((before_s, student), (before_t, teacher)):
        after = _snapshot(model)
        assert after[1] == before[1]
        assert all(torch.equal(after[0][k], v) for k, v in before[0].items())
        assert all(
            (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
            for a, b in zip(after[2], before[2], strict=True)
        )


def test_training_step_after_probe_is_bit_identical(small_vocab, tokenizer):
    """With dropout on, any RNG draw or mode change by the probe would change the update."""
    student, teacher, batch = small_vocab
    student.config.attention_dropout = 0.3
    for layer in student.model.layers:
        layer.self_attn.attention_dropout = 0.3
    twin = copy.deepcopy(student)

    def step(model, probe):
        torch.manual_seed(123)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        if probe:
            probe_tokens(model, teacher, batch, tokenizer, step=0, ratio=0.5, c=0.5, base_temperature=1.0)
            probe_gradient_groups(model, teacher, batch, step=0, ratio=0.5, divergence="rkl")
        losses = []
        for _ in range(2):
            loss = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        return losses

    plain, probed = step(twin, False), step(student, True)
    assert plain == probed
    assert all(torch.equal(a, b) for a, b in zip(twin.parameters(), student.parameters(), strict=True))
    # and the dropout really draws random numbers (otherwise this test would prove nothing)
    torch.manual_seed(0)
    a = student(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    b = student(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    assert a.item() != b.item()


def test_frames_write_to_parquet_and_read_back(tiny_pair, batch, tmp_path):
    df = probe_tokens(
        tiny_pair.student, tiny_pair.teacher, batch, tiny_pair.tokenizer, step=0, ratio=0.5, c=0.5, base_temperature=1.0
    )
    g = probe_gradient_groups(tiny_pair.student, tiny_pair.teacher, batch, step=0, ratio=0.5, divergence="rkl")
    for frame, name in ((df, "tokens.parquet"), (g, "gradients.parquet")):
        frame.to_parquet(tmp_path / name, index=False)
        back = pd.read_parquet(tmp_path / name)
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)


# ---------------------------------------------------------------------- inside a real run
@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Two smoke runs, same seed: one with probes (and evaluation) on, one with both off."""
    from adakd.presets import resolve_preset
    from adakd.training.trainer import train

    root = tmp_path_factory.mktemp("runs")
    common = ["max_steps=3", "checkpoint_interval=0", "eval_max_new_tokens=4"]
    probed = train(resolve_preset("smoke", common + ["probe_interval=3", "eval_examples=2"]), root / "probed")
    plain = train(resolve_preset("smoke", common + ["probe_interval=0", "eval_examples=0"]), root / "plain")
    return probed, plain


@pytest.mark.slow
def test_run_tokens_parquet_equals_recomputation_from_final_checkpoint(smoke_runs):
    from adakd.config import RunConfig
    from adakd.runs.rundir import RunDir
    from adakd.training import checkpoint as ckpt
    from adakd.training.runsetup import build_models, prepare_data

    run = RunDir(smoke_runs[0])
    config = RunConfig.from_dict(run.read_config()["config"])
    tokens = run.read_parquet("tokens.parquet")
    assert sorted(set(tokens["step"])) == [0, 3]  # step 0 (before any update) and every interval
    teacher, student, tokenizer = build_models(config, torch.device("cpu"))
    step, path = ckpt.latest_checkpoint(run.checkpoints)
    assert step == 3
    ckpt.load_checkpoint(path, student)
    batch = prepare_data(config, tokenizer).probe_batch
    final = tokens[tokens["step"] == 3].reset_index(drop=True)
    ratio = float(final["ratio"].iloc[0])
    assert ratio == run.read_metrics()[-1]["next_ratio"]  # the r the next step would use
    _assert_rows_match(
        final, student, teacher, batch, tokenizer, ratio=ratio, c=config.idts_c, base=config.base_temperature
    )

    grads = run.read_parquet("gradients.parquet")
    assert sorted(set(grads["step"])) == [0, 3]
    for _, part in grads.groupby(["step", "split"]):
        assert part["norm_share"].sum() == pytest.approx(100.0)
        assert (part["cos_total"] >= 0).all() and part["cos_sft"].between(-1, 1).all()


@pytest.mark.slow
def test_probe_examples_are_the_probed_texts_and_the_explorer_scores_them_alike(smoke_runs):
    """probe_examples gives the Examples whose tokens the run recorded (example i of
    tokens.parquet), so the explorer, given one, scores the same reply tokens; with the student
    as the run started, the same difficulties as the step-0 probe."""
    from adakd.config import RunConfig
    from adakd.data.tokenize import encode_example
    from adakd.runs.rundir import RunDir
    from adakd.training.runsetup import build_models, prepare_data, probe_examples
    from analysis.explorer import explore_prompt

    run = RunDir(smoke_runs[0])
    config = RunConfig.from_dict(run.read_config()["config"])
    teacher, student, tokenizer = build_models(config, torch.device("cpu"))
    examples = probe_examples(config, tokenizer)
    batch = prepare_data(config, tokenizer).probe_batch
    assert len(examples) == batch["input_ids"].shape[0] == config.probe_examples
    for row, example in enumerate(examples):
        ids = encode_example(tokenizer, example, config.max_prompt_length, config.max_length)["input_ids"]
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
    tokens = run.read_parquet("tokens.parquet")
    start = tokens[tokens["step"] == 0]
    for index, example in enumerate(examples):
        rows = start[start["example"] == index].sort_values("token_index")
        result = explore_prompt(
            teacher, student, tokenizer, example.instruction, example.response, context=example.context, ratio=0.5
        )
        assert result.response_ids[: len(rows)] == rows["token_id"].tolist()
        scored = result.tokens["difficulty"].to_numpy()[: len(rows)]
        np.testing.assert_allclose(scored, rows["difficulty"].to_numpy(), atol=2e-5)


@pytest.mark.slow
def test_probes_and_evaluation_leave_training_bit_identical(smoke_runs):
    from adakd.runs.rundir import RunDir

    probed, plain = RunDir(smoke_runs[0]), RunDir(smoke_runs[1])
    assert [e["kind"] for e in probed.read_events()].count("probe") == 2
    assert {r["model"] for r in probed.read_eval()} == {"teacher", "student_init", "student"}
    assert not plain.file("tokens.parquet").exists()
    keys = ("loss", "kd", "ce", "ratio", "grad_norm", "n_selected")
    assert [[m[k] for k in keys] for m in probed.read_metrics()] == [[m[k] for k in keys] for m in plain.read_metrics()]
    weights = "checkpoints/step-000003/model.safetensors"
    assert probed.file(weights).read_bytes() == plain.file(weights).read_bytes()


# ---------------------------------------------------------------------- models without boolean logits_to_keep
class _NoMaskKeep(torch.nn.Module):
    """A causal LM whose forward refuses a boolean [B, T] logits_to_keep with IndexError, as
    transformers 5.17 does (it indexes hidden_states[:, keep, :]); counts the calls by kind."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = {"mask": 0, "full": 0}

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        if isinstance(logits_to_keep, torch.Tensor) and logits_to_keep.dtype == torch.bool:
            self.calls["mask"] += 1
            raise IndexError("too many indices for tensor of dimension 3")
        self.calls["full"] += 1
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep)


class _AlwaysIndexError(_NoMaskKeep):
    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        raise IndexError("index out of range in self")  # e.g. a token id outside the vocabulary


def test_models_without_boolean_logits_to_keep_get_full_logits_and_the_same_rows(tiny_pair, batch, monkeypatch):
    import adakd.training.probes as probes

    monkeypatch.setattr(probes, "_FULL_LOGITS_ONLY", set())
    student, teacher, tok = tiny_pair.student, tiny_pair.teacher, tiny_pair.tokenizer
    old_student, old_teacher = _NoMaskKeep(student), _NoMaskKeep(teacher)
    kwargs = dict(step=3, ratio=0.5, c=0.5, base_temperature=1.0)
    pd.testing.assert_frame_equal(
        probe_tokens(old_student, old_teacher, batch, tok, **kwargs),
        probe_tokens(student, teacher, batch, tok, **kwargs),
        rtol=1e-5,
    )
    pd.testing.assert_frame_equal(
        probe_gradient_groups(old_student, old_teacher, batch, step=3, ratio=0.5, divergence="rkl"),
        probe_gradient_groups(student, teacher, batch, step=3, ratio=0.5, divergence="rkl"),
        rtol=1e-5,
    )
    # the refusal is met once and remembered for the class: every later call goes straight to full logits
    assert old_student.calls["mask"] + old_teacher.calls["mask"] == 1
    assert old_student.calls["full"] + old_teacher.calls["full"] == 4
    assert _NoMaskKeep in probes._FULL_LOGITS_ONLY and type(student) not in probes._FULL_LOGITS_ONLY

    broken = _AlwaysIndexError(student)  # an IndexError with another cause is raised, not remembered
    with pytest.raises(IndexError, match="out of range"):
        teacher_valid_logits(broken, batch)
    assert _AlwaysIndexError not in probes._FULL_LOGITS_ONLY
