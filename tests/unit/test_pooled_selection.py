"""adakd.method.pooled_selection: LATF's selection pooled over several micro-batches.

The defining property (docs/method.md §2.2): scoring each part, selecting over the pool and
averaging the parts' losses gives the loss and gradient of *one* batch made of all parts —
the same tokens selected, the same IDTS temperatures, the same value. The reference is
``adakd_loss`` on the concatenated batch (itself tested against float64 references in
test_loss.py); the pooled side runs ``adakd_loss`` / ``adakd_loss_from_hidden`` per part with
its ``PooledShare``."""

import pytest
import torch

from adakd import adakd_loss
from adakd.method.hidden_loss import adakd_loss_from_hidden, token_scores_from_hidden
from adakd.method.lm_head import LMHead
from adakd.method.loss import token_scores
from adakd.method.pooled_selection import TokenScores, pool_selection
from adakd.method.temperature import CTKDTemperature

T, H_S, H_T, V = 7, 12, 16, 53
ROWS = (2, 3, 1)  # the parts' batch sizes (micro-batches of different sizes and token counts)


def parts(seed=0):
    gen = torch.Generator().manual_seed(seed)
    w_s = (torch.randn(V, H_S, generator=gen) / 2).requires_grad_()
    w_t = torch.randn(V, H_T, generator=gen) / 2
    b_s = torch.randn(V, generator=gen).requires_grad_()
    out = []
    for b in ROWS:
        h_s = torch.randn(b, T, H_S, generator=gen).requires_grad_()
        h_t = torch.randn(b, T, H_T, generator=gen)
        mask = torch.rand(b, T, generator=gen) > 0.35
        mask[0, :2] = False
        labels = torch.randint(0, V, (b, T), generator=gen)
        out.append((h_s, h_t, mask, labels))
    return out, LMHead(w_s, b_s), LMHead(w_t, None)


SETTINGS = [
    {"ratio": 0.3, "idts": True},
    {"ratio": 0.55, "idts": False, "divergence": "fkl"},
    {"ratio": 0.4, "idts": True, "inverse": True, "divergence": "jsd", "indicator": "topk"},
    {"ratio": 0.5, "idts": True, "indicator": "ce"},
    {"ratio": 1.0, "idts": True},  # no selection, but IDTS's median is the pool's
    {"ratio": 0.35, "idts": False, "ctkd": True},
    {"ratio": 0.45, "idts": True, "standardize": True, "divergence": "srkl"},
]


def pooled_and_whole(settings, hidden: bool):
    data, s_head, t_head = parts()
    settings = dict(settings)
    ctkd = CTKDTemperature(1.0) if settings.pop("ctkd", False) else None
    params = [s_head.weight, s_head.bias] + [h for h, *_ in data] + ([ctkd.tau] if ctkd is not None else [])
    selection = {k: settings.get(k, d) for k, d in (("ratio", 1.0), ("idts", True), ("c", 0.5), ("inverse", False))}
    score_args = dict(indicator=settings.get("indicator", "hellinger"), topk=settings.get("topk", 5))

    # pooled: score each part, select over the pool, one loss per part (their mean is the step's)
    scores = []
    for h_s, h_t, mask, labels in data:
        if hidden:
            scores.append(token_scores_from_hidden(h_s, h_t, mask, s_head, t_head, labels=labels, **score_args))
        else:
            scores.append(token_scores(s_head(h_s), t_head(h_t), mask, labels=labels, **score_args))
    shares = pool_selection(scores, base_temperature=1.0, **selection)
    outs = []
    for (h_s, h_t, mask, labels), share in zip(data, shares, strict=True):
        tau = {"learned_temperature": ctkd(0.7)} if ctkd is not None else {}
        if hidden:
            outs.append(
                adakd_loss_from_hidden(
                    h_s, h_t, mask, s_head, t_head, labels=labels, pooled=share, chunk_size=3, **settings, **tau
                )
            )
        else:
            outs.append(adakd_loss(s_head(h_s), t_head(h_t), mask, labels=labels, pooled=share, **settings, **tau))
    loss = torch.stack([o.loss for o in outs]).mean()
    pooled_grads = torch.autograd.grad(loss, params)

    # whole: one batch of all parts (padded to the same T already), one ordinary adakd_loss
    cat = [torch.cat([p[i] for p in data]) for i in range(4)]
    tau = {"learned_temperature": ctkd(0.7)} if ctkd is not None else {}
    whole = adakd_loss(s_head(cat[0]), t_head(cat[1]), cat[2], labels=cat[3], **settings, **tau)
    whole_grads = torch.autograd.grad(whole.loss, params)
    return outs, loss, pooled_grads, whole, whole_grads


@pytest.mark.parametrize("hidden", [False, True], ids=["logits", "hidden"])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_the_pool_is_one_batch_of_all_parts(settings, hidden):
    outs, loss, grads, whole, whole_grads = pooled_and_whole(settings, hidden)
    assert sum(o.n_valid for o in outs) == whole.n_valid
    assert sum(o.n_selected for o in outs) == whole.n_selected
    assert torch.equal(torch.cat([o.selected for o in outs]), whole.selected)
    torch.testing.assert_close(torch.cat([o.difficulty for o in outs]), whole.difficulty, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(
        torch.cat([o.temperature for o in outs]), whole.temperature, atol=1e-6, rtol=1e-6, equal_nan=True
    )
    torch.testing.assert_close(loss.detach(), whole.loss.detach(), atol=1e-6, rtol=1e-6)
    # the logged KD term: the mean of the parts' kd is the pool's L_KD
    torch.testing.assert_close(torch.stack([o.kd for o in outs]).mean(), whole.kd, atol=1e-6, rtol=1e-6)
    for g, g_ref in zip(grads, whole_grads, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hidden", [False, True], ids=["logits", "hidden"])
def test_the_logged_ce_comes_from_the_scoring_pass(hidden):
    """At kd_ratio = 1 the CE is only logged: each part's equals the mean −log q(label) over its
    own valid tokens, computed here from the materialised logits."""
    outs, *_ = pooled_and_whole({"ratio": 0.4}, hidden)
    data, s_head, _ = parts()
    for out, (h_s, _, mask, labels) in zip(outs, data, strict=True):
        logits = s_head(h_s).detach()[mask]
        expected = torch.nn.functional.cross_entropy(logits, labels[mask])
        torch.testing.assert_close(out.ce, expected, atol=1e-6, rtol=1e-6)


def test_a_part_without_selected_tokens_contributes_zero():
    """Scores that make every token of part 1 easier than all of part 0's: at r = 0.25 the pool's
    K tokens all lie in part 0, part 1's loss is 0 and its gradient is zero, and still flows."""
    data, s_head, t_head = parts(seed=3)
    m0 = data[0][2]
    h1, t1, m1, y1 = data[1]
    n0, n1 = int(m0.sum()), int(m1.sum())
    scores = [TokenScores(torch.linspace(1.0, 0.6, n0), None), TokenScores(torch.linspace(0.5, 0.1, n1), None)]
    shares = pool_selection(scores, ratio=0.25, idts=True, base_temperature=1.0, c=0.5, inverse=False)
    k = int(0.25 * (n0 + n1))
    assert k <= n0 and shares[0].plan.n_selected == k and shares[1].plan.n_selected == 0
    assert shares[0].kd_denominator == k / 2
    out = adakd_loss_from_hidden(h1, t1, m1, s_head, t_head, labels=y1, pooled=shares[1], ratio=0.25)
    assert out.loss.item() == 0.0 and out.n_selected == 0
    (grad,) = torch.autograd.grad(out.loss, [h1])
    assert torch.count_nonzero(grad) == 0
    out = adakd_loss(s_head(h1), t_head(t1), m1, labels=y1, pooled=shares[1], ratio=0.25)
    assert out.loss.item() == 0.0


def test_ties_go_to_the_earlier_part():
    """Equal scores everywhere: the top K are the first K tokens of the pool, as in one batch."""
    scores = [TokenScores(torch.full((4,), 0.5), None), TokenScores(torch.full((5,), 0.5), None)]
    shares = pool_selection(scores, ratio=0.5, idts=False, base_temperature=1.0, c=0.5, inverse=False)
    assert shares[0].plan.selected.tolist() == [True, True, True, True]
    assert shares[1].plan.selected.tolist() == [False] * 5
    assert shares[0].plan.idx is None  # every row of part 0: the one-pass layout


def test_a_share_must_fit_its_batch():
    data, s_head, t_head = parts()
    scores = [token_scores(s_head(h), t_head(t), m) for h, t, m, _ in data]
    shares = pool_selection(scores, ratio=0.5, idts=True, base_temperature=1.0, c=0.5, inverse=False)
    h_s, h_t, mask, _ = data[0]
    with pytest.raises(ValueError, match="covers .* valid tokens; this batch has"):
        adakd_loss(s_head(h_s), t_head(h_t), mask, pooled=shares[1])
    with pytest.raises(ValueError, match="covers .* valid tokens; this batch has"):
        adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, pooled=shares[1])
    with pytest.raises(ValueError, match="at least one part"):
        pool_selection([], ratio=0.5, idts=True, base_temperature=1.0, c=0.5, inverse=False)
