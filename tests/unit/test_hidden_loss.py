"""adakd.method.hidden_loss.adakd_loss_from_hidden against adakd_loss on the materialised logits
(itself tested against float64 references in test_loss.py / test_ablation_arms.py): loss,
per-token outputs and every gradient, for every divergence, r < 1 and r = 1, masks, chunks
smaller than the batch, SFT mixing, CTKD, logit standardisation, soft-capped and scaled heads,
bf16; and adakd.method.lm_head's heads against the models' own logits."""

import pytest
import torch

from adakd import DIVERGENCES, adakd_loss
from adakd.method.hidden_loss import adakd_loss_from_hidden
from adakd.method.lm_head import LastHidden, LMHead
from adakd.method.temperature import CTKDTemperature

B, T, H_S, H_T, V = 3, 9, 16, 24, 61


def inputs(dtype=torch.float32, seed=0, bias=True, scale=1.0, softcap=None, all_masked=False):
    gen = torch.Generator().manual_seed(seed)
    h_s = torch.randn(B, T, H_S, generator=gen).to(dtype).requires_grad_()
    h_t = torch.randn(B, T, H_T, generator=gen).to(dtype)
    w_s = (torch.randn(V, H_S, generator=gen) / 2).to(dtype).requires_grad_()
    w_t = (torch.randn(V, H_T, generator=gen) / 2).to(dtype)
    b_s = torch.randn(V, generator=gen).to(dtype).requires_grad_() if bias else None
    b_t = torch.randn(V, generator=gen).to(dtype) if bias else None
    mask = torch.rand(B, T, generator=gen) > 0.3
    mask[0, :3] = False  # a prompt
    if all_masked:
        mask[:] = False
    labels = torch.randint(0, V, (B, T), generator=gen)
    return h_s, h_t, LMHead(w_s, b_s, scale, softcap), LMHead(w_t, b_t, scale, softcap), mask, labels


def both(settings, *, dtype=torch.float32, chunk=4, ctkd=False, sft=False, cache_rows=None, **head):
    """(reference output, its gradients, hidden-state output, its gradients)."""
    h_s, h_t, s_head, t_head, mask, labels = inputs(dtype, **head)
    params = [h_s, s_head.weight] + ([s_head.bias] if s_head.bias is not None else [])
    temperature = CTKDTemperature(1.0) if ctkd else None
    if temperature is not None:
        params.append(temperature.tau)
    results = []
    for hidden in (False, True):
        kwargs = dict(settings, labels=labels)
        if temperature is not None:
            kwargs["learned_temperature"] = temperature(0.6)
        if hidden:
            out = adakd_loss_from_hidden(
                h_s,
                None if sft else h_t,
                mask,
                s_head,
                None if sft else t_head,
                chunk_size=chunk,
                cache_rows=cache_rows,
                **kwargs,
            )
        else:
            out = adakd_loss(s_head(h_s), None if sft else t_head(h_t), mask, **kwargs)
        results += [out, torch.autograd.grad(out.loss, params)]
    return results


def assert_equal(ref, ref_grads, out, grads, tol):
    assert out.n_valid == ref.n_valid and out.n_selected == ref.n_selected
    torch.testing.assert_close(out.loss.detach(), ref.loss.detach(), atol=tol, rtol=tol)
    torch.testing.assert_close(out.kd, ref.kd, atol=tol, rtol=tol)
    torch.testing.assert_close(out.ce, ref.ce, atol=tol, rtol=tol, equal_nan=True)
    torch.testing.assert_close(out.difficulty, ref.difficulty, atol=tol, rtol=tol, equal_nan=True)
    assert torch.equal(out.selected, ref.selected)
    torch.testing.assert_close(out.temperature, ref.temperature, atol=tol, rtol=tol, equal_nan=True)
    for g, g_ref in zip(grads, ref_grads, strict=True):
        assert g.dtype == g_ref.dtype
        torch.testing.assert_close(g, g_ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("divergence", sorted(DIVERGENCES))
@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_every_divergence_equals_the_materialised_loss(divergence, ratio):
    assert_equal(*both({"divergence": divergence, "ratio": ratio, "idts": ratio < 1}), tol=1e-6)


@pytest.mark.parametrize(
    "settings",
    [
        {"ratio": 0.3, "kd_ratio": 0.4},  # CE over every valid token in the loss, KD over the selected
        {"ratio": 1.0, "kd_ratio": 0.4, "idts": False},  # the same in one pass
        {"ratio": 0.5, "kd_ratio": 0.0, "divergence": "fkl"},  # SFT with a teacher: KD logged only
        {"ratio": 0.5, "indicator": "topk", "topk": 3},
        {"ratio": 0.5, "indicator": "ce"},
        {"ratio": 0.5, "indicator": "jsd", "inverse": True},
        {"ratio": 0.5, "standardize": True, "idts": False},
        {"ratio": 0.5, "base_temperature": 2.0, "idts": False},
    ],
)
def test_the_ablation_arms_equal_the_materialised_loss(settings):
    assert_equal(*both(settings), tol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 1.0])  # r = 1 with a τ known up front: the one-pass path
def test_ctkd_temperature_gradient_is_the_same(ratio):
    ref, ref_grads, out, grads = both({"ratio": ratio, "idts": False}, ctkd=True)
    assert_equal(ref, ref_grads, out, grads, tol=1e-6)
    assert grads[-1].abs() > 0  # the learned τ received a gradient


def test_sft_without_a_teacher():
    assert_equal(*both({"kd_ratio": 0.0}, sft=True), tol=1e-6)


@pytest.mark.parametrize("head", [{"bias": False}, {"scale": 0.3}, {"softcap": 2.5}, {"scale": 2.0, "softcap": 4.0}])
def test_heads_with_scale_soft_cap_and_no_bias(head):
    assert_equal(*both({"ratio": 0.5}, **head), tol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunk_size_does_not_change_the_result(chunk):
    assert_equal(*both({"ratio": 0.5, "divergence": "jsd"}, chunk=chunk), tol=1e-6)


@pytest.mark.parametrize("cache_rows", [0, 3, 1000])  # none; evictions and misses; every selected row
@pytest.mark.parametrize("settings", [{"ratio": 0.5}, {"ratio": 1.0}, {"ratio": 0.4, "kd_ratio": 0.5}])
def test_the_row_cache_changes_no_value(cache_rows, settings):
    assert_equal(*both(settings, cache_rows=cache_rows), tol=1e-6)


def test_cached_rows_skip_the_teachers_head_in_the_distillation_pass(monkeypatch):
    h_s, h_t, s_head, t_head, mask, labels = inputs()
    rows_through = []
    original = LMHead.pre_activation

    def counted(self, h):
        if self is t_head:
            rows_through.append(h.shape[0])
        return original(self, h)

    monkeypatch.setattr(LMHead, "pre_activation", counted)
    n_valid = int(mask.sum())
    for cache_rows, expected in [(0, n_valid + n_valid // 2), (1000, n_valid), (2, n_valid + n_valid // 2 - 2)]:
        rows_through.clear()
        out = adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, ratio=0.5, chunk_size=4, cache_rows=cache_rows)
        assert out.n_selected == n_valid // 2
        assert sum(rows_through) == expected, cache_rows


def test_bf16_matches_the_materialised_bf16_loss():
    ref, ref_grads, out, grads = both({"ratio": 0.5}, dtype=torch.bfloat16)
    assert torch.equal(out.selected, ref.selected)
    torch.testing.assert_close(out.loss.detach(), ref.loss.detach(), atol=1e-3, rtol=1e-3)
    for g, g_ref in zip(grads, ref_grads, strict=True):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g.float(), g_ref.float(), atol=2e-2, rtol=2e-2)


def test_an_all_masked_batch_gives_zero_loss_and_zero_gradient():
    h_s, h_t, s_head, t_head, mask, labels = inputs(all_masked=True)
    out = adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, ratio=0.5, labels=labels)
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.n_valid == 0 and out.ce.item() == 0.0
    assert h_s.grad is not None and not h_s.grad.any()
    assert s_head.weight.grad is not None and not s_head.weight.grad.any()


def test_the_incoming_gradient_scales_the_precomputed_one():
    h_s, h_t, s_head, t_head, mask, _ = inputs()
    out = adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, ratio=0.5)
    (full,) = torch.autograd.grad(out.loss, h_s, retain_graph=True)
    (quarter,) = torch.autograd.grad(out.loss / 4, h_s)
    torch.testing.assert_close(quarter, full / 4)


def test_without_gradient_it_only_evaluates():
    h_s, h_t, s_head, t_head, mask, _ = inputs()
    with torch.no_grad():
        out = adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, ratio=0.5)
        ref = adakd_loss(s_head(h_s), t_head(h_t), mask, ratio=0.5)
    assert out.loss.grad_fn is None
    torch.testing.assert_close(out.loss, ref.loss)


def test_bad_shapes_are_refused_with_what_to_fix():
    h_s, h_t, s_head, t_head, mask, _ = inputs()
    with pytest.raises(ValueError, match="mask has shape"):
        adakd_loss_from_hidden(h_s, h_t, mask[:, :-1], s_head, t_head)
    with pytest.raises(ValueError, match="must agree on"):
        adakd_loss_from_hidden(h_s, h_t[:, :-1], mask, s_head, t_head)
    small = LMHead(t_head.weight[:-1])
    with pytest.raises(ValueError, match="vocabulary"):
        adakd_loss_from_hidden(h_s, h_t, mask, s_head, small)


def _tiny_models():
    import transformers as tr

    common = {
        "vocab_size": 97,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    return {
        "llama": tr.LlamaConfig(**common),
        "gemma2": tr.Gemma2Config(**common, head_dim=8, final_logit_softcapping=3.0),
        "cohere": tr.CohereConfig(**common, logit_scale=0.25),
        "granite": tr.GraniteConfig(**common, logits_scaling=4.0),
        "gpt2": tr.GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4),
    }


@pytest.mark.parametrize("family", ["llama", "gemma2", "cohere", "granite", "gpt2"])
def test_lm_head_of_a_model_reproduces_its_logits(family):
    import transformers as tr

    torch.manual_seed(0)
    model = tr.AutoModelForCausalLM.from_config(_tiny_models()[family]).eval()
    ids = torch.randint(0, 97, (2, 6))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        rebuilt = LMHead.of(model)(LastHidden(model)(ids, torch.ones_like(ids)))
    torch.testing.assert_close(rebuilt, logits, atol=1e-6, rtol=1e-6)
