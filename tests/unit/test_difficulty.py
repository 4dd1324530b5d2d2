"""Unit tests of adakd.method.difficulty: Hellinger and the ablation indicators against plain-Python
values, properties on random inputs, chunking, masked vocabularies and the no-gradient rule."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adakd import hellinger, token_difficulty
from adakd.method.difficulty import score_tokens

Z_S = [1.0, 0.0, -1.0]
Z_T = [0.5, 1.5, -0.5]


def softmax(z):
    e = [math.exp(x) for x in z]
    return [x / sum(e) for x in e]


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def t64(values):
    return torch.tensor(values, dtype=torch.float64)


def test_hellinger_hand_computed():
    p, q = softmax(Z_T), softmax(Z_S)
    expected = math.sqrt(0.5 * sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(p, q, strict=True)))
    # the two forms of docs/method.md §1 agree
    assert expected == pytest.approx(math.sqrt(1 - sum(math.sqrt(x * y) for x, y in zip(p, q, strict=True))), rel=1e-12)
    assert hellinger(t64(Z_S), t64(Z_T)).item() == pytest.approx(expected, rel=1e-12)
    got32 = hellinger(torch.tensor(Z_S), torch.tensor(Z_T))
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(expected, rel=1e-5)


def test_hellinger_of_identical_inputs_is_exactly_zero():
    z = torch.randn(6, 100, generator=torch.Generator().manual_seed(0))
    assert (hellinger(z, z) == 0).all()


def test_hellinger_of_disjoint_supports_is_one():
    # −inf logits (masked vocabulary): the student puts all mass on token 0, the teacher on 1
    s = torch.tensor([0.0, -math.inf, -math.inf])
    t = torch.tensor([-math.inf, 0.0, -math.inf])
    assert hellinger(s, t).item() == pytest.approx(1.0)


def test_masked_vocabulary_equals_reduced_vocabulary():
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(5, 8, generator=gen), torch.randn(5, 8, generator=gen)
    sm, tm = s.clone(), t.clone()
    sm[:, 2] = tm[:, 2] = -math.inf
    keep = [0, 1, 3, 4, 5, 6, 7]
    for indicator in ("hellinger", "fkl", "rkl", "jsd", "entropy"):
        got = token_difficulty(sm, tm, indicator)
        assert torch.isfinite(got).all()
        assert torch.allclose(got, token_difficulty(s[:, keep], t[:, keep], indicator), atol=1e-6), indicator


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(2, 40), st.floats(0.1, 30.0), st.integers(0, 2**31 - 1))
def test_hellinger_symmetric_and_in_unit_interval(rows, vocab, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    s, t = scale * torch.randn(rows, vocab, generator=gen), scale * torch.randn(rows, vocab, generator=gen)
    h = hellinger(s, t)
    assert ((h >= 0) & (h <= 1)).all()
    assert torch.allclose(h, hellinger(t, s), atol=1e-6)


def test_no_gradient_flows():
    s = torch.randn(3, 4, 10, requires_grad=True)
    t = torch.randn(3, 4, 10, requires_grad=True)
    for indicator in ("hellinger", "fkl", "rkl", "jsd", "entropy"):
        assert not token_difficulty(s, t, indicator).requires_grad


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_chunking_does_not_change_the_result(chunk):
    gen = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 9, 30, generator=gen), torch.randn(2, 9, 30, generator=gen)
    labels = torch.randint(0, 30, (2, 9), generator=gen)
    full, full_nll = score_tokens(s, t, labels=labels, with_nll=True, chunk_size=10_000)
    got, nll = score_tokens(s, t, labels=labels, with_nll=True, chunk_size=chunk)
    assert got.shape == (2, 9)
    assert torch.equal(got, full) and torch.equal(nll, full_nll)


def test_indicators_hand_computed():
    p, q = softmax(Z_T), softmax(Z_S)
    s, t = t64(Z_S), t64(Z_T)
    assert token_difficulty(s, t, "fkl").item() == pytest.approx(kl(p, q), rel=1e-10)
    assert token_difficulty(s, t, "rkl").item() == pytest.approx(kl(q, p), rel=1e-10)
    m = [(x + y) / 2 for x, y in zip(p, q, strict=True)]
    assert token_difficulty(s, t, "jsd").item() == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m), rel=1e-10)
    assert token_difficulty(s, t, "ce", labels=torch.tensor(2)).item() == pytest.approx(-math.log(q[2]), rel=1e-10)
    assert token_difficulty(s, t, "entropy").item() == pytest.approx(-sum(x * math.log(x) for x in q), rel=1e-10)


def test_bf16_and_huge_logits_are_finite():
    gen = torch.Generator().manual_seed(3)
    s = (1e4 * torch.randn(4, 16, generator=gen)).bfloat16()
    t = (1e4 * torch.randn(4, 16, generator=gen)).bfloat16()
    for indicator in ("hellinger", "fkl", "rkl", "jsd", "entropy"):
        got = token_difficulty(s, t, indicator)
        assert got.dtype == torch.float32 and torch.isfinite(got).all(), indicator


def test_bad_input_messages():
    z = torch.zeros(2, 3, 5)
    with pytest.raises(ValueError, match="valid: hellinger"):
        token_difficulty(z, z, "kl")
    with pytest.raises(ValueError, match="needs labels"):
        token_difficulty(z, z, "ce")
    with pytest.raises(ValueError, match=r"token ids in \[0, 5\)"):
        token_difficulty(z, z, "ce", labels=torch.full((2, 3), -100))
    with pytest.raises(ValueError, match="expected"):
        token_difficulty(z, z, "ce", labels=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="same shape"):
        hellinger(z, torch.zeros(2, 3, 6))


def test_fused_expression_equals_the_eager_scores():
    # hellinger_rows is what torch.compile fuses on CUDA; run eagerly here it must agree
    from adakd.method.difficulty import hellinger_rows

    gen = torch.Generator().manual_seed(4)
    s, t = 3 * torch.randn(6, 40, generator=gen), 3 * torch.randn(6, 40, generator=gen)
    s[0] = t[0]  # identical row → exactly 0
    s[1, 5] = t[1, 5] = -math.inf  # masked entry
    labels = torch.randint(0, 40, (6,), generator=gen)
    labels[1] = 0
    h, nll = hellinger_rows(s, t, labels)
    ref_h, ref_nll = score_tokens(s, t, labels=labels, with_nll=True)
    assert h[0] == 0 and torch.allclose(h, ref_h, atol=1e-6) and torch.allclose(nll, ref_nll, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_compiled_scores_match_cpu():
    gen = torch.Generator().manual_seed(5)
    s, t = 3 * torch.randn(700, 1000, generator=gen), 3 * torch.randn(700, 1000, generator=gen)
    s[0] = t[0]
    s[1, :3] = t[1, :3] = -math.inf
    labels = torch.randint(0, 1000, (700,), generator=gen)
    for dtype in (torch.float32, torch.bfloat16):
        h, nll = score_tokens(
            s.cuda().to(dtype), t.cuda().to(dtype), labels=labels.cuda(), with_nll=True, chunk_size=256
        )
        ref_h, ref_nll = score_tokens(s.to(dtype), t.to(dtype), labels=labels, with_nll=True)
        assert h[0].item() == 0.0
        assert torch.allclose(h.cpu(), ref_h, atol=2e-6) and torch.allclose(nll.cpu(), ref_nll, atol=2e-5)


def test_failed_compiled_scorer_falls_back_to_eager_once(monkeypatch, caplog):
    """After the compiled Hellinger fails on one chunk, every later chunk runs eagerly without
    calling it again and without another warning (it used to call False and warn per chunk)."""
    import logging
    from types import SimpleNamespace

    from adakd.method import difficulty

    calls = []

    def broken(s_rows, t_rows, labels):
        calls.append(len(s_rows))
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr(difficulty, "_compiled", broken)
    monkeypatch.delenv("ADAKD_COMPILE", raising=False)
    run = difficulty._fused_hellinger(SimpleNamespace(is_cuda=True))  # only is_cuda is read
    gen = torch.Generator().manual_seed(6)
    s, t = torch.randn(4, 30, generator=gen), torch.randn(4, 30, generator=gen)
    labels = torch.randint(0, 30, (4,), generator=gen)
    with caplog.at_level(logging.WARNING, logger="adakd.method.difficulty"):
        for rows in (slice(0, 2), slice(2, 4)):
            h, nll = run(s[rows], t[rows], labels[rows])
            ref_h, ref_nll = difficulty.hellinger_rows(s[rows], t[rows], labels[rows])
            assert torch.equal(h, ref_h) and torch.equal(nll, ref_nll)
    assert calls == [2]
    assert [r.getMessage() for r in caplog.records] == [
        "compiled difficulty scoring failed (compiler exploded); falling back to eager"
    ]
