"""Captum attributions on a tiny random model: shape, correctness by direct recomputation,
the prompt bound, and the side-by-side figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adakd.data.instructions import Example
from adakd.data.tokenize import encode_prompt, format_prompt
from adakd.models.loading import tiny_random_llama
from analysis.attribution import (
    METHODS,
    AttributionResult,
    attribute_token,
    attribution_figure,
    baseline_token_id,
)

PROMPT = "Name the capital of France."
RESPONSE = " Paris is the capital."
TARGET = 2  # response token index: predicted from prompt + the first two response tokens


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_random_llama(len(tokenizer), layers=2, hidden=64, seed=5).eval()


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    return encode_prompt(tokenizer, Example(PROMPT), 1 << 30)


@pytest.fixture(scope="module")
def response_ids(tokenizer):
    return tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]


def _log_prob(model, ids, target_id) -> float:
    with torch.no_grad():
        z = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return float(torch.log_softmax(z, -1)[target_id])


def _features(tokenizer, prompt_ids):
    special = set(tokenizer.all_special_ids)
    return [j for j, t in enumerate(prompt_ids) if t not in special]


@pytest.mark.parametrize("method", METHODS)
def test_one_score_per_non_special_prompt_token(model, tokenizer, prompt_ids, response_ids, method):
    res = attribute_token(model, tokenizer, prompt_ids, response_ids, TARGET, method=method, n_steps=8)
    features = _features(tokenizer, prompt_ids)
    assert isinstance(res, AttributionResult) and res.method == method
    assert res.scores.shape == (len(features),) and np.isfinite(res.scores).all()
    assert list(res.positions) == features
    assert res.tokens == [tokenizer.decode([prompt_ids[j]]) for j in features]
    assert res.target_token_id == response_ids[TARGET] and res.target_index == TARGET
    assert res.target_log_prob == pytest.approx(
        _log_prob(model, prompt_ids + response_ids[:TARGET], response_ids[TARGET]), abs=1e-4
    )
    assert len(prompt_ids) > len(features)  # the chat template's special tokens were skipped


def test_feature_ablation_equals_direct_occlusion(model, tokenizer, prompt_ids, response_ids):
    """score_j = log p(target | prompt) − log p(target | prompt with token j := baseline)."""
    res = attribute_token(model, tokenizer, prompt_ids, response_ids, TARGET, method="feature_ablation")
    prefix, target = response_ids[:TARGET], response_ids[TARGET]
    full = _log_prob(model, prompt_ids + prefix, target)
    baseline = baseline_token_id(tokenizer)
    for k, j in enumerate(res.positions[:6]):
        ablated = list(prompt_ids)
        ablated[j] = baseline
        assert res.scores[k] == pytest.approx(full - _log_prob(model, ablated + prefix, target), abs=2e-4)


def test_integrated_gradients_is_complete(model, tokenizer, prompt_ids, response_ids):
    """Completeness: Σ_j IG_j ≈ log p(target | input) − log p(target | all features at baseline)."""
    res = attribute_token(
        model,
        tokenizer,
        prompt_ids,
        response_ids,
        TARGET,
        method="integrated_gradients",
        n_steps=64,
        internal_batch_size=16,
    )
    prefix, target = response_ids[:TARGET], response_ids[TARGET]
    baseline_ids = list(prompt_ids)
    for j in res.positions:
        baseline_ids[j] = baseline_token_id(tokenizer)
    expected = _log_prob(model, prompt_ids + prefix, target) - _log_prob(model, baseline_ids + prefix, target)
    assert abs(expected) > 1e-3
    assert res.scores.sum() == pytest.approx(expected, rel=0.02, abs=1e-3)


def test_text_and_ids_give_the_same_attribution(model, tokenizer, prompt_ids, response_ids):
    text = format_prompt(tokenizer, Example(PROMPT))
    by_text = attribute_token(model, tokenizer, text, RESPONSE, TARGET)
    by_ids = attribute_token(model, tokenizer, prompt_ids, response_ids, TARGET)
    assert by_text.tokens == by_ids.tokens
    np.testing.assert_allclose(by_text.scores, by_ids.scores, atol=1e-6)


def test_model_state_is_left_as_found(tokenizer, prompt_ids, response_ids):
    student = tiny_random_llama(len(tokenizer), layers=1, hidden=32, seed=6).train()
    state = torch.random.get_rng_state()
    with torch.no_grad():  # gradients are turned on inside even when the caller disabled them
        attribute_token(student, tokenizer, prompt_ids, response_ids, 0, method="integrated_gradients", n_steps=4)
    assert student.training
    assert all(p.grad is None for p in student.parameters())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_prompt_past_the_bound_is_refused_with_both_lengths(model, tokenizer, prompt_ids, response_ids):
    with pytest.raises(ValueError, match=rf"the prompt is {len(prompt_ids)} tokens.*max_prompt_tokens=10"):
        attribute_token(model, tokenizer, prompt_ids, response_ids, 0, max_prompt_tokens=10)
    total = len(prompt_ids) + TARGET
    with pytest.raises(ValueError, match=rf"is {total} tokens.*max_total_tokens={total - 1}"):
        attribute_token(model, tokenizer, prompt_ids, response_ids, TARGET, max_total_tokens=total - 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_token_index": 99}, r"target_token_index must be in \[0, "),
        ({"method": "lime"}, "method must be one of"),
        ({"n_steps": 0}, "n_steps"),
    ],
)
def test_bad_arguments(model, tokenizer, prompt_ids, response_ids, kwargs, message):
    args = {"target_token_index": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        attribute_token(model, tokenizer, prompt_ids, response_ids, **args)


def test_side_by_side_figure():
    tokens = ["a", " b", " c"]
    teacher = AttributionResult(tokens, np.array([0.5, -1.0, 0.25]), "feature_ablation", " x", 7, 1, -1.5)
    student = AttributionResult(tokens, np.array([2.0, 0.0, -4.0]), "feature_ablation", " x", 7, 1, -3.0)
    fig = attribution_figure(teacher, student)
    assert [t.type for t in fig.data] == ["heatmap", "heatmap"]
    np.testing.assert_allclose(np.array(fig.data[0].z).ravel(), [0.5, -1.0, 0.25])  # / max |score| = 1
    np.testing.assert_allclose(np.array(fig.data[1].z).ravel(), [0.5, 0.0, -1.0])  # / 4
    np.testing.assert_allclose(np.array(fig.data[1].customdata).ravel(), [2.0, 0.0, -4.0])  # raw in hover
    assert list(fig.data[0].y) == ["0: a", "1: ␣b", "2: ␣c"]
    assert "teacher" in fig.layout.annotations[0].text and "student" in fig.layout.annotations[1].text
