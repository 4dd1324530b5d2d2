"""adakd.decoding: the one decoding protocol of evaluation, student sampling and the explorer."""

from __future__ import annotations

import types

import pytest
from transformers import GenerationConfig

from adakd.decoding import decoding_config, without_model_defaults


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
