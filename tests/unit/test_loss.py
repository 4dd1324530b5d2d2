"""Tests of adakd.method.loss.adakd_loss: a fully hand-computed batch, equivalence with plain KD,
τ² scaling, the no-gradient-through-s-and-τ rule, SFT mixing and the edge cases of the issue
(all-masked, single token, identical models, −inf, ±1e4, bf16, float64)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from adakd import DIVERGENCES, adakd_loss, hellinger


def softmax(z, tau=1.0):
    e = [math.exp(x / tau) for x in z]
    return [x / sum(e) for x in e]


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def batch(b=2, t=5, v=11, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    s = (2 * torch.randn(b, t, v, generator=gen)).to(dtype).requires_grad_()
    te = (2 * torch.randn(b, t, v, generator=gen)).to(dtype)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[0, :2] = False  # a "prompt"
    mask[-1, -1] = False  # "padding"
    return s, te, mask


def torch_rkl(s, t, tau):
    """Reverse KL per token written from the definition, τ a float or [N] tensor."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    tau = tau.unsqueeze(-1) if tau.dim() else tau
    logq = torch.log_softmax(s.double() / tau, -1)
    logp = torch.log_softmax(t.double() / tau, -1)
    return (logq.exp() * (logq - logp)).sum(-1)


# ------------------------------------------------------------------ hand-computed batch
def test_full_adakd_on_a_hand_computed_batch():
    student = [
        [[1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.5]],
        [[0.3, 0.2, 0.1], [-1.0, 2.0, 0.0], [9.0, 9.0, 9.0]],
    ]
    teacher = [
        [[0.5, 1.5, -0.5], [3.0, 0.0, 0.0], [2.0, -1.0, 0.0]],
        [[0.3, 0.2, 0.1], [1.0, 1.0, -2.0], [0.0, 0.0, 0.0]],
    ]
    mask = [[True, True, True], [True, True, False]]
    ratio, c, base = 0.6, 0.5, 1.2
    # Plain Python: valid tokens in row-major order, Hellinger at τ = 1, top-k, IDTS, rkl at τ_i.
    valid = [(b, t) for b in range(2) for t in range(3) if mask[b][t]]
    diff = []
    for b, t in valid:
        p, q = softmax(teacher[b][t]), softmax(student[b][t])
        diff.append(math.sqrt(0.5 * sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(p, q, strict=True))))
    k = max(1, math.floor(ratio * len(valid)))  # floor(0.6·5) = 3
    chosen = sorted(range(len(valid)), key=lambda i: -diff[i])[:k]
    m = sorted(diff[i] for i in chosen)[(k - 1) // 2]  # lower median
    taus = {i: base * math.exp(-c * math.tanh(math.log(max(diff[i] / m, 1e-8)))) for i in chosen}
    kd = 0.0
    for i in chosen:
        b, t = valid[i]
        tau = taus[i]
        kd += tau**2 * kl(softmax(student[b][t], tau), softmax(teacher[b][t], tau))
    kd /= k

    out = adakd_loss(
        torch.tensor(student, dtype=torch.float64, requires_grad=True),
        torch.tensor(teacher, dtype=torch.float64),
        torch.tensor(mask),
        ratio=ratio,
        c=c,
        base_temperature=base,
        divergence="rkl",
    )
    assert out.loss.item() == pytest.approx(kd, rel=1e-10)
    assert out.difficulty.tolist() == pytest.approx(diff, rel=1e-10)
    assert out.selected.tolist() == [i in chosen for i in range(len(valid))]
    for i in range(len(valid)):
        if i in chosen:
            assert out.temperature[i].item() == pytest.approx(taus[i], rel=1e-10)
        else:
            assert math.isnan(out.temperature[i].item())
    assert (out.n_valid, out.n_selected) == (5, 3)
    assert out.mean_temperature == pytest.approx(sum(taus.values()) / 3, rel=1e-10)
    assert math.isnan(out.ce.item())


# ------------------------------------------------------------------ plain KD and τ²
@pytest.mark.parametrize("base", [1.0, 2.0, 0.5])
def test_ratio_one_without_idts_is_plain_kd(base):
    s, t, mask = batch()
    out = adakd_loss(s, t, mask, ratio=1.0, idts=False, base_temperature=base, divergence="rkl")
    out.loss.backward()
    grad = s.grad.clone()
    s.grad = None
    # plain token-level KD, masked mean over the valid tokens, τ² scaling
    plain = (base**2 * torch_rkl(s, t, base) * mask).sum() / mask.sum()
    plain.backward()
    assert out.loss.item() == pytest.approx(plain.item(), rel=1e-6)
    assert torch.allclose(grad, s.grad.float(), rtol=1e-5, atol=1e-6)
    assert out.selected.all() and torch.equal(out.temperature, torch.full((out.n_valid,), base))


def test_tau_squared_scaling():
    s, t, mask = batch(dtype=torch.float64)
    at2 = adakd_loss(s, t, mask, ratio=1.0, idts=False, base_temperature=2.0).loss
    mean_d = torch_rkl(s[mask], t[mask], 2.0).mean()
    assert at2.item() == pytest.approx(4.0 * mean_d.item(), rel=1e-12)


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_every_divergence_runs_and_matches_the_per_token_function(name):
    from adakd import divergence

    s, t, mask = batch(seed=3)
    out = adakd_loss(s, t, mask, ratio=1.0, idts=False, divergence=name)
    assert out.loss.item() == pytest.approx(divergence(name, s[mask], t[mask]).mean().item(), rel=1e-6)
    out.loss.backward()
    assert torch.isfinite(s.grad).all()


# ------------------------------------------------------------------ gradient rule
@pytest.mark.parametrize("inverse", [False, True])
def test_no_gradient_through_difficulty_or_temperature(inverse):
    s, t, mask = batch(b=3, t=6, v=9, seed=4, dtype=torch.float64)
    out = adakd_loss(s, t, mask, ratio=0.5, c=0.8, idts=True, inverse=inverse)
    out.loss.backward()
    got = s.grad.clone()
    s.grad = None
    # the same formula with the selection and τ supplied as constants
    sel, tau = out.selected, out.temperature[out.selected]
    ref = (tau**2 * torch_rkl(s[mask][sel], t[mask][sel], tau)).mean()
    ref.backward()
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(got, s.grad, atol=1e-14)
    # unselected and masked positions get exactly no gradient
    flat = got[mask]
    assert (flat[~sel] == 0).all() and (got[~mask] == 0).all()
    assert (flat[sel].abs().sum(-1) > 0).all()


def test_teacher_is_a_constant():
    s, t, mask = batch()
    t.requires_grad_()
    adakd_loss(s, t, mask, ratio=0.5).loss.backward()
    assert t.grad is None


# ------------------------------------------------------------------ SFT mixing and labels
def test_cross_entropy_is_logged_and_mixed():
    s, t, mask = batch(seed=5)
    labels = torch.randint(0, 11, mask.shape, generator=torch.Generator().manual_seed(0))
    labels[~mask] = -100  # ignored positions may hold anything
    ce_ref = F.cross_entropy(s[mask].double(), labels[mask])
    pure = adakd_loss(s, t, mask, ratio=0.5, labels=labels)
    assert pure.ce.item() == pytest.approx(ce_ref.item(), rel=1e-6)
    assert pure.loss.item() == pytest.approx(pure.kd.item())

    mixed = adakd_loss(s, t, mask, ratio=0.5, labels=labels, kd_ratio=0.3)
    assert mixed.loss.item() == pytest.approx(0.7 * ce_ref.item() + 0.3 * pure.kd.item(), rel=1e-6)
    mixed.loss.backward()
    g_mixed = s.grad.clone()
    s.grad = None
    (0.7 * F.cross_entropy(s[mask], labels[mask]) + 0.3 * adakd_loss(s, t, mask, ratio=0.5).loss).backward()
    assert torch.allclose(g_mixed, s.grad, atol=1e-7)

    sft = adakd_loss(s, t, mask, labels=labels, kd_ratio=0.0)
    assert sft.loss.item() == pytest.approx(ce_ref.item(), rel=1e-6) and not sft.kd.requires_grad


def test_ce_indicator_uses_the_labels():
    s, t, mask = batch(seed=6)
    labels = torch.randint(0, 11, mask.shape, generator=torch.Generator().manual_seed(1))
    out = adakd_loss(s, t, mask, labels=labels, indicator="ce")
    nll = -torch.log_softmax(s[mask].detach(), -1).gather(-1, labels[mask][:, None]).squeeze(-1)
    assert torch.allclose(out.difficulty, nll, atol=1e-6)


# ------------------------------------------------------------------ edge cases of the issue
def test_difficulty_is_hellinger_in_row_major_order_of_the_mask():
    s, t, mask = batch(seed=7)
    out = adakd_loss(s, t, mask, ratio=0.5)
    assert torch.equal(out.difficulty, hellinger(s[mask], t[mask]))
    assert out.n_valid == int(mask.sum()) and out.n_selected == int(out.selected.sum()) == out.n_valid // 2


def test_selection_is_pooled_over_the_batch():
    s, t, mask = batch(b=2, t=4, v=7, seed=8)
    mask[:] = True
    with torch.no_grad():
        s[1] = t[1] + 1e-3 * torch.randn(4, 7)  # the second sequence is easy everywhere
    out = adakd_loss(s, t, mask, ratio=0.5)
    assert out.selected.tolist() == [True] * 4 + [False] * 4


def test_all_masked_batch_gives_zero_not_nan():
    s, t, mask = batch()
    mask[:] = False
    out = adakd_loss(s, t, mask, ratio=0.5, labels=torch.zeros(mask.shape, dtype=torch.long))
    assert out.loss.item() == 0.0 and out.kd.item() == 0.0 and out.ce.item() == 0.0
    out.loss.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))
    assert out.n_valid == out.n_selected == 0 and out.difficulty.shape == (0,)
    assert math.isnan(out.mean_temperature)


def test_single_valid_token():
    s, t, mask = batch()
    mask[:] = False
    mask[1, 2] = True
    out = adakd_loss(s, t, mask, ratio=0.1, base_temperature=1.3)
    assert out.selected.tolist() == [True] and out.temperature.tolist() == pytest.approx([1.3])
    expected = 1.3**2 * torch_rkl(s[1, 2], t[1, 2], 1.3)
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_identical_models():
    _, t, mask = batch()
    s = t.clone().requires_grad_()
    out = adakd_loss(s, t, mask, ratio=0.5, base_temperature=1.1)
    assert out.loss.item() == 0.0
    assert (out.difficulty == 0).all()
    assert torch.equal(out.temperature[out.selected], torch.full((out.n_selected,), 1.1))
    out.loss.backward()
    assert s.grad.abs().max() < 1e-6  # q·(1 − Σq): zero up to rounding


def test_masked_vocabulary_and_huge_logits():
    s, t, mask = batch(seed=9)
    with torch.no_grad():
        s[..., 3] = t[..., 3] = -math.inf
        s[0, 3, 0], t[0, 3, 0] = 1e4, -1e4
        s[1, 1, 5], t[1, 1, 6] = -1e4, 1e4
    for name in DIVERGENCES:
        s.grad = None
        out = adakd_loss(s, t, mask, ratio=0.5, divergence=name)
        assert torch.isfinite(out.loss), name
        out.loss.backward()
        assert torch.isfinite(s.grad).all(), name


def test_bf16_inputs():
    s, t, mask = batch(seed=10, dtype=torch.bfloat16)
    out = adakd_loss(s, t, mask, ratio=0.5)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    ref = adakd_loss(s.detach().float(), t.float(), mask, ratio=0.5)
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)
    out.loss.backward()
    assert s.grad.dtype == torch.bfloat16 and torch.isfinite(s.grad.float()).all()


def test_float64_inputs_stay_float64():
    s, t, mask = batch(dtype=torch.float64)
    out = adakd_loss(s, t, mask, ratio=0.5)
    assert out.loss.dtype == out.difficulty.dtype == out.temperature.dtype == torch.float64


def test_bad_input_messages():
    s, t, mask = batch()
    with pytest.raises(ValueError, match="mask has shape"):
        adakd_loss(s, t, mask[:, :-1])
    with pytest.raises(ValueError, match="same shape"):
        adakd_loss(s, t[..., :-1], mask)
    with pytest.raises(ValueError, match="ratio"):
        adakd_loss(s, t, mask, ratio=0.0)
    with pytest.raises(ValueError, match="labels are needed"):
        adakd_loss(s, t, mask, kd_ratio=0.5)
    with pytest.raises(ValueError, match="valid names: fkl"):
        adakd_loss(s, t, mask, divergence="kl")
    with pytest.raises(ValueError, match="no parameter"):
        adakd_loss(s, t, mask, divergence="rkl", divergence_params={"lam": 0.1})
    with pytest.raises(ValueError, match="token ids"):
        adakd_loss(s, t, mask, labels=torch.full(mask.shape, -100))


def test_import_is_light():
    code = (
        "import sys, adakd; heavy = [m for m in ('transformers', 'streamlit', 'plotly') if m in sys.modules];"
        "assert not heavy, heavy; assert adakd.__version__ == '0.1.0'; assert callable(adakd.adakd_loss)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_non_contiguous_logits_as_the_trainer_passes_them():
    # the trainer scores logits[:, :-1]: a strided view; result and gradient must not change
    s_full, t_full, _ = batch(b=2, t=6, v=9, seed=11)
    mask = torch.tensor([[False, True, True, True, False], [True, True, False, True, True]])
    out = adakd_loss(s_full[:, :-1], t_full[:, :-1], mask, ratio=0.5)
    out.loss.backward()
    g_view = s_full.grad.clone()
    s_full.grad = None
    s_copy = s_full[:, :-1].detach().clone().requires_grad_()
    ref = adakd_loss(s_copy, t_full[:, :-1].clone(), mask, ratio=0.5)
    ref.loss.backward()
    assert out.loss.item() == ref.loss.item()
    assert torch.equal(g_view[:, :-1], s_copy.grad) and (g_view[:, -1] == 0).all()


def test_one_position_without_batch_dims():
    s, t = torch.randn(7, requires_grad=True), torch.randn(7)
    out = adakd_loss(s, t, torch.tensor(True), ratio=0.5)
    assert out.n_valid == 1 and out.loss.item() == pytest.approx(torch_rkl(s, t, 1.0).item(), rel=1e-6)
    assert adakd_loss(s, t, torch.tensor(False)).loss.item() == 0.0
