"""Unit tests of adakd.method.divergences: every divergence against values computed with plain Python
math (never with the code under test), limits, the GKD generalised JSD, masked vocabularies,
extreme logits and dtypes."""

import math

import pytest
import torch
import torch.nn.functional as F

from adakd import DIVERGENCES, divergence
from adakd.method.divergences import akl_head_weight

Z_S = [1.0, 0.0, -1.0]
Z_T = [0.5, 1.5, -0.5]


# ------------------------------------------------------------------ plain-Python references
def softmax(z, tau=1.0):
    e = [math.exp(x / tau) for x in z]
    return [x / sum(e) for x in e]


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def mix(a, b, w):  # w·a + (1−w)·b
    return [w * x + (1 - w) * y for x, y in zip(a, b, strict=True)]


def ref_divergence(name, p, q, **kw):
    if name == "fkl":
        return kl(p, q)
    if name == "rkl":
        return kl(q, p)
    if name == "jsd":
        lam = kw.get("lam", 0.9)
        m = mix(p, q, 1 - lam)
        return lam * kl(q, m) + (1 - lam) * kl(p, m)
    if name == "tvd":
        return 0.5 * sum(abs(x - y) for x, y in zip(p, q, strict=True))
    if name == "sfkl":
        lam = kw.get("lam", 0.1)
        return kl(p, mix(p, q, lam))
    if name == "srkl":
        lam = kw.get("lam", 0.1)
        return kl(q, mix(q, p, lam))
    if name == "ab":
        a, b = kw.get("alpha", 0.2), kw.get("beta", 0.7)
        s = a + b
        return -sum(x**a * y**b - a / s * x**s - b / s * y**s for x, y in zip(p, q, strict=True)) / (a * b)
    if name == "akl":
        order = sorted(range(len(p)), key=lambda v: -p[v])
        head, cum = set(), 0.0
        for v in order:  # the head includes the token that crosses 50 %
            if cum < 0.5:
                head.add(v)
            cum += p[v]
        err = [abs(x - y) for x, y in zip(p, q, strict=True)]
        h = sum(err[v] for v in head) / sum(err)
        return h * kl(p, q) + (1 - h) * kl(q, p)
    raise KeyError(name)


def t64(values):
    return torch.tensor(values, dtype=torch.float64)


# ------------------------------------------------------------------ hand-computed values
@pytest.mark.parametrize("name", list(DIVERGENCES))
@pytest.mark.parametrize("tau", [1.0, 2.0, 0.7])
def test_matches_hand_computed_value(name, tau):
    expected = ref_divergence(name, softmax(Z_T, tau), softmax(Z_S, tau))
    got = divergence(name, t64(Z_S), t64(Z_T), tau)
    assert got.dtype == torch.float64 and got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    got32 = divergence(name, torch.tensor(Z_S), torch.tensor(Z_T), tau)
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "name,params",
    [("jsd", {"lam": 0.3}), ("sfkl", {"lam": 0.5}), ("srkl", {"lam": 0.25}), ("ab", {"alpha": 0.5, "beta": 1.5})],
)
def test_parameters_change_the_value_as_the_formula_says(name, params):
    expected = ref_divergence(name, softmax(Z_T), softmax(Z_S), **params)
    assert divergence(name, t64(Z_S), t64(Z_T), **params).item() == pytest.approx(expected, rel=1e-10)


def test_akl_head_includes_the_token_that_crosses_half_the_mass():
    p, q = [0.3, 0.45, 0.25], [0.5, 0.3, 0.2]
    # sorted teacher: 0.45 (cum before 0) and 0.30 (cum before 0.45 < 0.5) are the head;
    # |p − q| = [0.2, 0.15, 0.05] → h = (0.2 + 0.15) / 0.4 = 0.875 (the release rule gives 0.375)
    h = akl_head_weight(t64(q).log(), t64(p).log())
    assert h.item() == pytest.approx(0.875, rel=1e-12)
    expected = 0.875 * kl(p, q) + 0.125 * kl(q, p)
    assert divergence("akl", t64(q).log(), t64(p).log()).item() == pytest.approx(expected, rel=1e-10)


def test_akl_head_weight_guards_zero_over_zero():
    z = t64([0.2, -1.0, 3.0])
    assert akl_head_weight(torch.log_softmax(z, -1), torch.log_softmax(z, -1)).item() == 0.5


def test_ab_at_one_half_is_four_times_squared_hellinger():
    p, q = softmax(Z_T), softmax(Z_S)
    h2 = 1 - sum(math.sqrt(x * y) for x, y in zip(p, q, strict=True))
    got = divergence("ab", t64(Z_S), t64(Z_T), alpha=0.5, beta=0.5).item()
    assert got == pytest.approx(4 * h2, rel=1e-10)


# ------------------------------------------------------------------ limits
@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_identical_inputs_give_zero(name):
    z = torch.randn(3, 5, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tau = torch.rand(3, 5, dtype=torch.float64) + 0.5
    assert torch.allclose(divergence(name, z, z), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(divergence(name, z, z, tau), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_nonnegative_on_random_inputs(name):
    gen = torch.Generator().manual_seed(2)
    s, t = 3 * torch.randn(64, 20, generator=gen), 3 * torch.randn(64, 20, generator=gen)
    assert (divergence(name, s, t) >= -1e-6).all()


def test_skews_at_lambda_zero_are_the_plain_kls():
    gen = torch.Generator().manual_seed(3)
    s, t = torch.randn(8, 7, generator=gen, dtype=torch.float64), torch.randn(8, 7, generator=gen, dtype=torch.float64)
    assert torch.allclose(divergence("sfkl", s, t, lam=0.0), divergence("fkl", s, t))
    assert torch.allclose(divergence("srkl", s, t, lam=0.0), divergence("rkl", s, t))


def trl_generalized_jsd(student_logits, teacher_logits, beta):
    """TRL's GKDTrainer.generalized_jsd_loss per token (its definition, written here)."""
    student_logp = F.log_softmax(student_logits, dim=-1)
    teacher_logp = F.log_softmax(teacher_logits, dim=-1)
    beta = torch.tensor(beta, dtype=student_logp.dtype)
    mixture = torch.logsumexp(torch.stack([student_logp + torch.log(1 - beta), teacher_logp + torch.log(beta)]), dim=0)
    kl_teacher = F.kl_div(mixture, teacher_logp, reduction="none", log_target=True).sum(-1)  # KL(p ‖ m)
    kl_student = F.kl_div(mixture, student_logp, reduction="none", log_target=True).sum(-1)  # KL(q ‖ m)
    return beta * kl_teacher + (1 - beta) * kl_student


@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9])
def test_jsd_is_the_gkd_generalised_jsd_with_beta_one_minus_lambda(lam):
    gen = torch.Generator().manual_seed(4)
    s, t = (
        2 * torch.randn(4, 6, 13, generator=gen, dtype=torch.float64),
        2 * torch.randn(4, 6, 13, generator=gen, dtype=torch.float64),
    )
    assert torch.allclose(divergence("jsd", s, t, lam=lam), trl_generalized_jsd(s, t, 1 - lam), atol=1e-12)


# ------------------------------------------------------------------ temperature, shapes, dtypes
@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_per_token_temperature_equals_separate_scalar_calls(name):
    gen = torch.Generator().manual_seed(5)
    s, t = torch.randn(4, 9, generator=gen), torch.randn(4, 9, generator=gen)
    taus = [0.6, 1.0, 1.4, 2.5]
    batched = divergence(name, s, t, torch.tensor(taus))
    for i, tau in enumerate(taus):
        assert batched[i].item() == pytest.approx(divergence(name, s[i], t[i], tau).item(), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7)])
def test_output_shape_is_logits_without_vocab(shape):
    s, t = torch.randn(shape), torch.randn(shape)
    for name in DIVERGENCES:
        assert divergence(name, s, t).shape == shape[:-1]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["rkl", "jsd", "akl"])
def test_half_precision_inputs_are_upcast(name, dtype):
    gen = torch.Generator().manual_seed(6)
    s = torch.randn(6, 50, generator=gen).to(dtype).requires_grad_()
    t = torch.randn(6, 50, generator=gen).to(dtype)
    got = divergence(name, s, t, 1.3)
    assert got.dtype == torch.float32
    # exactly the float32 computation on the rounded values
    assert torch.allclose(got, divergence(name, s.detach().float(), t.float(), 1.3), atol=1e-6)
    got.sum().backward()
    assert s.grad.dtype == dtype and torch.isfinite(s.grad.float()).all()


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_masked_vocabulary_equals_the_reduced_vocabulary(name):
    gen = torch.Generator().manual_seed(7)
    s, t = torch.randn(3, 6, generator=gen, dtype=torch.float64), torch.randn(3, 6, generator=gen, dtype=torch.float64)
    s_masked, t_masked = s.clone(), t.clone()
    s_masked[:, [1, 4]] = -math.inf
    t_masked[:, [1, 4]] = -math.inf
    keep = [0, 2, 3, 5]
    s_masked.requires_grad_()
    got = divergence(name, s_masked, t_masked, 1.5)
    assert torch.allclose(got, divergence(name, s[:, keep], t[:, keep], 1.5), atol=1e-10)
    got.sum().backward()
    assert torch.isfinite(s_masked.grad).all()
    assert (s_masked.grad[:, [1, 4]] == 0).all()


@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_huge_logits_are_finite_and_match_the_effective_distribution(name):
    # ±1e4: the third token has probability exp(−1e4) = 0 on both sides, so the value is
    # that of the two-token distributions softmax([0, −1]) and softmax([0, −2]).
    s = torch.tensor([1e4, 1e4 - 1, -1e4], requires_grad=True)
    t = torch.tensor([1e4, 1e4 - 2, 0.0])
    got = divergence(name, s, t)
    assert torch.isfinite(got)
    p, q = softmax([0.0, -2.0]) + [0.0], softmax([0.0, -1.0]) + [0.0]
    assert got.item() == pytest.approx(ref_divergence(name, p, q), rel=1e-4, abs=1e-6)
    got.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", [n for n in DIVERGENCES if n != "akl"])
def test_gradient_matches_finite_differences(name):
    # (akl's head weight h is a constant by design, as in the AKL release)
    gen = torch.Generator().manual_seed(8)
    s = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    tau = torch.tensor([0.7, 1.0, 1.8], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: divergence(name, x, t, tau), (s,))


def test_teacher_gets_no_gradient():
    s = torch.randn(4, 5, requires_grad=True)
    t = torch.randn(4, 5, requires_grad=True)
    divergence("rkl", s, t).sum().backward()
    assert t.grad is None and s.grad is not None


# ------------------------------------------------------------------ bad input
def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="fkl, rkl, jsd, tvd, sfkl, srkl, ab, akl"):
        divergence("kl", torch.zeros(3), torch.zeros(3))


def test_unknown_parameter_is_rejected():
    with pytest.raises(ValueError, match="lam"):
        divergence("jsd", torch.zeros(3), torch.zeros(3), alpha=0.3)


@pytest.mark.parametrize("bad", [dict(name="jsd", lam=1.0), dict(name="ab", alpha=0.0), dict(name="sfkl", lam=1.0)])
def test_out_of_range_parameters_are_rejected(bad):
    name = bad.pop("name")
    with pytest.raises(ValueError, match=name):
        divergence(name, torch.zeros(3), torch.zeros(3), **bad)


def test_shape_and_temperature_errors():
    with pytest.raises(ValueError, match="same shape"):
        divergence("rkl", torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        divergence("rkl", torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="per-token temperature"):
        divergence("rkl", torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3))
