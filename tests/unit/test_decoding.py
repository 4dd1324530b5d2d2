"""adakd.evaluation.decoding: the one decoding protocol of evaluation, student sampling and the explorer."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import GenerationConfig

from adakd.evaluation.decoding import (
    RowSeededGumbel,
    decoding_config,
    row_seed,
    row_seeded_sampling,
    without_model_defaults,
)


def test_sampling_config_sets_every_knob():
    config = decoding_config(12, greedy=False, stop=(5, 7), pad=0, temperature=0.7, top_p=0.9)
    assert config.do_sample is True and config.max_new_tokens == 12
    assert (config.temperature, config.top_p, config.top_k) == (0.7, 0.9, 0)  # top-k off
    assert config.num_beams == 1 and config.repetition_penalty == 1.0 and config.no_repeat_ngram_size == 0
    assert config.eos_token_id == [5, 7] and config.pad_token_id == 0 and config.use_cache is True


def test_greedy_config_does_not_sample():
    config = decoding_config(3, greedy=True, stop=[2], pad=2, temperature=0.1, top_p=0.5)
    assert config.do_sample is False and config.num_beams == 1
    assert config.temperature != 0.1 and config.top_p != 0.5  # unused when greedy: left at the defaults
    assert config.eos_token_id == [2] and config.pad_token_id == 2


def test_model_defaults_are_blank_inside_and_restored_after_an_error():
    own = GenerationConfig(repetition_penalty=1.3, top_k=7)
    model = types.SimpleNamespace(generation_config=own)
    with pytest.raises(RuntimeError, match="boom"), without_model_defaults(model):
        assert model.generation_config is not own
        assert model.generation_config.to_dict() == GenerationConfig().to_dict()  # nothing of the model's own
        raise RuntimeError("boom")
    assert model.generation_config is own


# ---------------------------------------------------------------------- row-seeded sampling
def _draw_frequencies(processors, logits: torch.Tensor, rows: int) -> torch.Tensor:
    """Argmax of the processed scores for ``rows`` copies of ``logits``: one draw per row."""
    scores = processors(torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1).clone())
    return torch.bincount(scores.argmax(-1), minlength=logits.numel()).double() / rows


def _within_four_sigma(freq: torch.Tensor, probs: torch.Tensor, rows: int) -> bool:
    sigma = (probs * (1 - probs) / rows).sqrt()
    return bool(((freq - probs).abs() <= 4 * sigma + 1e-12).all())


def test_gumbel_argmax_draws_from_the_softmax_and_never_from_minus_infinity():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log()  # the last entry is -inf
    rows = 20_000
    _, processors = row_seeded_sampling(4, row_seeds=range(rows), stop=[1], pad=0)
    freq = _draw_frequencies(processors, logits, rows)
    assert freq[-1] == 0
    assert _within_four_sigma(freq, probs, rows)


def test_temperature_and_top_p_shape_the_distribution_before_the_draw():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 20_000
    # top-p 0.6: the nucleus is {0.5, 0.3} (the smallest set reaching 0.6), renormalised
    _, nucleus = row_seeded_sampling(4, row_seeds=range(rows), stop=[1], pad=0, top_p=0.6)
    freq = _draw_frequencies(nucleus, probs.log(), rows)
    assert _within_four_sigma(freq, torch.tensor([0.625, 0.375, 0.0, 0.0]), rows)
    # temperature 0.5 squares the probabilities before renormalising: softmax(2 log p)
    _, cold = row_seeded_sampling(4, row_seeds=range(rows), stop=[1], pad=0, temperature=0.5)
    squared = probs**2 / (probs**2).sum()
    assert _within_four_sigma(_draw_frequencies(cold, probs.log(), rows), squared, rows)


def test_a_rows_noise_depends_on_its_own_seed_only():
    scores = torch.zeros(3, 50)
    together = RowSeededGumbel([7, 8, 9])(None, scores.clone())
    alone = RowSeededGumbel([8])(None, scores[:1].clone())
    assert torch.equal(together[1], alone[0])
    assert not torch.equal(together[0], together[2])
    with pytest.raises(ValueError, match="row seeds"):
        RowSeededGumbel([1, 2])(None, scores)


def test_row_seeds_differ_across_seeds_and_prompts():
    seeds = {row_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert row_seed(0, 1) == row_seed(0, 1)
    config, _ = row_seeded_sampling(5, row_seeds=[1], stop=[2], pad=2)
    assert config.do_sample is False  # the processors draw; the argmax picks the draw
