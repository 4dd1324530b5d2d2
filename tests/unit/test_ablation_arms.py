"""Every arm of the paper's ablation tables (docs/method.md): the loss and its gradient w.r.t. the
student logits (and, for CTKD, w.r.t. the temperature parameter) against an independent float64
reference written here with plain loops and naive formulas (autograd of the naive formula gives
the reference gradient). fp32 inputs, random masks; tolerance 1e-6.

Arms: Table 3 indicators (hellinger, fkl, rkl, jsd, ce, topk) in full AdaKD; Table 5 fixed τ,
inverse IDTS, logit standardisation, CTKD (with its gradient-reversal sign); the SFT baseline.
"""

import math

import pytest
import torch

from adakd import adakd_loss, token_difficulty
from adakd.method.temperature import CTKDTemperature, ctkd_strength, gradient_reversal, standardize_logits

TOL = 1e-6


# ------------------------------------------------------------------ the independent reference
def ref_log_softmax(z):
    """log softmax of a 1-D float64 tensor, from the definition (max-shifted)."""
    m = max(z.tolist())
    return z - (m + torch.log(torch.exp(z - m).sum()))


def ref_standardize(z):
    n = z.numel()
    mean = z.sum() / n
    std = torch.sqrt(((z - mean) ** 2).sum() / (n - 1))
    return (z - mean) / (std + 1e-7)


def ref_rank_violation(p, q, k):
    """NMTKD's score with explicit loops over the teacher's and the student's top-k."""
    vocab = len(p)
    teacher_top = sorted(range(vocab), key=lambda v: -p[v])[:k]
    student_top = sorted(range(vocab), key=lambda v: -q[v])[:k]
    t1 = teacher_top[0]
    score = 0.0
    for u in teacher_top:
        score += max(0.0, q[u] - q[t1])
    for v in student_top:
        for u in teacher_top:
            if p[u] > p[v]:
                score += max(0.0, q[v] - q[u])
    return score


def ref_difficulty(zs, zt, label, indicator, k):
    """One token's difficulty at τ = 1 (float, no gradient)."""
    logq, logp = ref_log_softmax(zs.detach()), ref_log_softmax(zt)
    q, p = logq.exp().tolist(), logp.exp().tolist()
    if indicator == "hellinger":
        return math.sqrt(0.5 * sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p, q, strict=True)))
    if indicator == "fkl":
        return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True))
    if indicator == "rkl":
        return sum(b * (math.log(b) - math.log(a)) for a, b in zip(p, q, strict=True))
    if indicator == "jsd":
        m = [0.5 * (a + b) for a, b in zip(p, q, strict=True)]
        kl_qm = sum(b * math.log(b / x) for b, x in zip(q, m, strict=True))
        return 0.5 * kl_qm + 0.5 * sum(a * math.log(a / x) for a, x in zip(p, m, strict=True))
    if indicator == "ce":
        return -math.log(q[label])
    if indicator == "topk":
        return ref_rank_violation(p, q, k)
    raise AssertionError(indicator)


def reference_loss(
    student,
    teacher,
    mask,
    labels,
    *,
    ratio=1.0,
    indicator="hellinger",
    k=5,
    idts="on",
    c=0.5,
    base=1.0,
    standardize=False,
    tau_param=None,
    kd_ratio=1.0,
):
    """The AdaKD loss (rkl base) from the definitions in docs/method.md, float64, token by token."""
    student = student.double()
    valid = [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]
    if kd_ratio == 0:  # SFT: mean −log q(label) over the valid tokens
        return sum(-ref_log_softmax(student[b, t])[labels[b, t]] for b, t in valid) / len(valid)
    teacher = teacher.double()
    scores = [ref_difficulty(student[b, t], teacher[b, t], int(labels[b, t]), indicator, k) for b, t in valid]
    n_sel = max(1, math.floor(ratio * len(valid) + 1e-9))
    chosen = sorted(sorted(range(len(valid)), key=lambda i: -scores[i])[:n_sel])
    sel_scores = sorted(scores[i] for i in chosen)
    median = sel_scores[(len(sel_scores) - 1) // 2]
    total = 0.0
    for i in chosen:
        if tau_param is not None:
            tau = tau_param
        elif idts == "off":
            tau = base
        else:
            s_hat = 0.0 if median == 0 else math.tanh(math.log(max(scores[i] / median, 1e-8)))
            tau = base * math.exp((1 if idts == "inverse" else -1) * c * s_hat)
        zs, zt = student[valid[i]], teacher[valid[i]]
        if standardize:
            zs, zt = ref_standardize(zs), ref_standardize(zt)
        logq, logp = ref_log_softmax(zs / tau), ref_log_softmax(zt / tau)
        total = total + tau**2 * (logq.exp() * (logq - logp)).sum()
    return total / n_sel


def random_batch(seed, b=3, t=7, v=37):
    gen = torch.Generator().manual_seed(seed)
    student = (2 * torch.randn(b, t, v, generator=gen)).float()
    teacher = (2 * torch.randn(b, t, v, generator=gen)).float()
    mask = torch.rand(b, t, generator=gen) > 0.3
    mask[0, 0] = True
    labels = torch.randint(0, v, (b, t), generator=gen)
    return student, teacher, mask, labels


def check(student, teacher, mask, labels, ref_kwargs, loss_kwargs, tau_module=None, strength=None):
    """Loss and gradient of adakd_loss (fp32) against the float64 reference."""
    s32 = student.clone().requires_grad_()
    learned = tau_module(strength) if tau_module is not None else None
    out = adakd_loss(s32, teacher, mask, labels=labels, divergence="rkl", learned_temperature=learned, **loss_kwargs)
    out.loss.backward()
    s64 = student.double().requires_grad_()
    ref = reference_loss(s64, teacher, mask, labels, **ref_kwargs)
    ref.backward()
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(ref.item(), rel=TOL, abs=TOL)
    torch.testing.assert_close(s32.grad.double(), s64.grad, rtol=TOL, atol=TOL)
    return out, ref


# ------------------------------------------------------------------ Table 3: indicators
@pytest.mark.parametrize("indicator", ["hellinger", "fkl", "rkl", "jsd", "ce", "topk"])
@pytest.mark.parametrize("seed", [0, 1])
def test_table3_indicator_arms_in_full_adakd(indicator, seed):
    student, teacher, mask, labels = random_batch(seed)
    check(
        student,
        teacher,
        mask,
        labels,
        dict(ratio=0.6, indicator=indicator),
        dict(ratio=0.6, idts=True, indicator=indicator),
    )


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_topk_indicator_equals_the_pair_loops(k):
    student, teacher, mask, labels = random_batch(3, v=23)
    got = token_difficulty(student, teacher, "topk", topk=k)
    for b in range(student.shape[0]):
        for t in range(student.shape[1]):
            want = ref_difficulty(student[b, t].double(), teacher[b, t].double(), 0, "topk", k)
            assert got[b, t].item() == pytest.approx(want, rel=TOL, abs=TOL)


def test_topk_indicator_hand_computed():
    # teacher order: 0 > 1 > 2 > 3; the student puts 2 first, then 1, 0
    p = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    q = torch.log(torch.tensor([[0.2, 0.3, 0.4, 0.1]]))
    # k = 2: T = {0, 1}, S = {2, 1}, t1 = 0.
    # top-1 term: ReLU(q0 − q0) + ReLU(q1 − q0) = 0.1
    # pairs: v=2: u=0 (p0 > p2): ReLU(.4 − .2) = .2; u=1 (p1 > p2): ReLU(.4 − .3) = .1
    #        v=1: u=0 (p0 > p1): ReLU(.3 − .2) = .1; u=1: p1 = p1, not counted
    got = token_difficulty(q, p, "topk", topk=2)
    assert got.item() == pytest.approx(0.1 + 0.2 + 0.1 + 0.1, abs=1e-6)
    assert token_difficulty(p, p, "topk", topk=4).item() == 0.0  # same order: no violation
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        token_difficulty(q, p, "topk", topk=0)


def test_topk_indicator_is_detached_and_k_is_capped_at_the_vocabulary():
    student, teacher, _, _ = random_batch(4, v=6)
    s = student.clone().requires_grad_()
    assert not token_difficulty(s, teacher, "topk", topk=50).requires_grad
    torch.testing.assert_close(
        token_difficulty(student, teacher, "topk", topk=50), token_difficulty(student, teacher, "topk", topk=6)
    )


# ------------------------------------------------------------------ Table 5: temperatures
@pytest.mark.parametrize("tau", [1.0, 0.8, 1.2, math.exp(-0.5)])
def test_table5_fixed_temperature_arms(tau):
    student, teacher, mask, labels = random_batch(5)
    check(
        student,
        teacher,
        mask,
        labels,
        dict(ratio=0.6, idts="off", base=tau),
        dict(ratio=0.6, idts=False, base_temperature=tau),
    )


def test_table5_inverse_idts_arm():
    student, teacher, mask, labels = random_batch(6)
    check(student, teacher, mask, labels, dict(ratio=0.6, idts="inverse"), dict(ratio=0.6, idts=True, inverse=True))


@pytest.mark.parametrize("idts", ["off", "on"])
@pytest.mark.parametrize("seed", [7, 8])
def test_table5_logit_standardisation_arm(idts, seed):
    student, teacher, mask, labels = random_batch(seed)
    check(
        student,
        teacher,
        mask,
        labels,
        dict(ratio=0.6, idts=idts, standardize=True),
        dict(ratio=0.6, idts=idts == "on", standardize=True),
    )


def test_standardize_logits_formula():
    z = torch.randn(4, 9, dtype=torch.float64)
    for row, got in zip(z, standardize_logits(z), strict=True):
        torch.testing.assert_close(got, ref_standardize(row))


@pytest.mark.parametrize("initial", [1.0, 1.3])
@pytest.mark.parametrize("strength", [1.0, 0.35, 0.0])
def test_table5_ctkd_arm_and_reversed_temperature_gradient(initial, strength):
    student, teacher, mask, labels = random_batch(9)
    module = CTKDTemperature(initial)
    theta = torch.tensor(initial, dtype=torch.float64, requires_grad=True)
    check(
        student,
        teacher,
        mask,
        labels,
        dict(ratio=0.6, tau_param=theta),
        dict(ratio=0.6, idts=False),
        tau_module=module,
        strength=strength,
    )
    # the reference's ∂L/∂τ; the GRL hands the parameter −λ times it
    assert theta.grad is not None and abs(theta.grad.item()) > 1e-4
    assert module.tau.grad.item() == pytest.approx(-strength * theta.grad.item(), rel=TOL, abs=TOL)


def test_gradient_reversal_layer_and_strength_schedule():
    x = torch.tensor([2.0, -1.0], requires_grad=True)
    y = gradient_reversal(x, 0.25)
    assert torch.equal(y, x.detach())
    (3 * y).sum().backward()
    assert x.grad.tolist() == [-0.75, -0.75]
    # cosine from 1 (first step) to 0 (last step)
    n = 11
    values = [ctkd_strength(i, n) for i in range(n)]
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.0, abs=1e-15)
    for i, lam in enumerate(values):
        assert lam == pytest.approx(0.5 * (1 + math.cos(math.pi * i / (n - 1))), abs=1e-15)
    assert ctkd_strength(0, 1) == 1.0
    with pytest.raises(ValueError):
        gradient_reversal(x, -1.0)


def test_ctkd_needs_idts_off():
    student, teacher, mask, labels = random_batch(0)
    with pytest.raises(ValueError, match="idts=False"):
        adakd_loss(student, teacher, mask, idts=True, learned_temperature=CTKDTemperature()(1.0))


# ------------------------------------------------------------------ SFT baseline
@pytest.mark.parametrize("seed", [10, 11])
def test_sft_arm_needs_no_teacher(seed):
    student, _, mask, labels = random_batch(seed)
    out, _ = check(student, None, mask, labels, dict(kd_ratio=0.0), dict(kd_ratio=0.0))
    assert out.kd.item() == 0.0 and out.n_selected == 0 and out.n_valid == int(mask.sum())
    assert out.ce.item() == pytest.approx(out.loss.item())
    with pytest.raises(ValueError, match="only for SFT"):
        adakd_loss(student, None, mask, labels=labels, kd_ratio=0.5)


def test_sft_with_a_teacher_gives_the_same_loss():
    student, teacher, mask, labels = random_batch(12)
    without = adakd_loss(student, None, mask, labels=labels, kd_ratio=0.0)
    with_teacher = adakd_loss(student, teacher, mask, labels=labels, kd_ratio=0.0)
    assert without.loss.item() == pytest.approx(with_teacher.loss.item(), rel=1e-6)


def test_ctkd_and_standardisation_with_a_masked_vocabulary_stay_finite():
    student, teacher, mask, labels = random_batch(13)
    student[..., :3] = -math.inf  # both models mask the first three entries
    teacher[..., :3] = -math.inf
    s = student.clone().requires_grad_()
    module = CTKDTemperature(1.0)
    out = adakd_loss(s, teacher, mask, ratio=0.6, idts=False, learned_temperature=module(1.0))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and torch.isfinite(s.grad).all()
    assert math.isfinite(module.tau.grad.item())
    # the same loss as the finite vocabulary without those entries
    ref = adakd_loss(
        student[..., 3:].clone(),
        teacher[..., 3:],
        mask,
        ratio=0.6,
        idts=False,
        learned_temperature=CTKDTemperature(1.0)(1.0),
    )
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-6)


def test_ctkd_with_logit_standardisation():
    student, teacher, mask, labels = random_batch(14)
    module = CTKDTemperature(0.9)
    theta = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    check(
        student,
        teacher,
        mask,
        labels,
        dict(ratio=0.6, tau_param=theta, standardize=True),
        dict(ratio=0.6, idts=False, standardize=True),
        tau_module=module,
        strength=0.5,
    )
    assert module.tau.grad.item() == pytest.approx(-0.5 * theta.grad.item(), rel=TOL, abs=TOL)
