"""Decoding with every knob explicit: one protocol for every ``generate()`` call of the package.

A model's own ``generation_config`` (top_k = 50, repetition penalties, min_p, ...) must not
silently change how replies are decoded. Two pieces make sure of that, used by evaluation
(:mod:`adakd.evaluation`), student sampling (:mod:`adakd.student_samples`) and the token
explorer (:mod:`analysis.explorer`):

    config = decoding_config(max_new_tokens, greedy=False, stop=stop, pad=pad, temperature=1.0, top_p=1.0)
    with without_model_defaults(model):
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import GenerationConfig

# Tokens that end a reply where the vocabulary has them: ChatML end of turn, GPT-2 style end of text.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def decoding_config(
    max_new_tokens: int,
    *,
    greedy: bool,
    stop: Sequence[int],
    pad: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> GenerationConfig:
    """A GenerationConfig with every decoding knob set.

    greedy: argmax at each step (temperature and top_p unused). Otherwise pure ancestral
    sampling from softmax(z / temperature) restricted to the top-p nucleus, with top_k = 0
    (top-k off). Always: one beam, no repetition penalty, no n-gram blocking, KV cache on;
    ``stop``: token ids that end a reply; ``pad``: the id written after a reply has ended.
    """
    from transformers import GenerationConfig

    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        num_beams=1,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        eos_token_id=list(stop),
        pad_token_id=pad,
        use_cache=True,
        **sampling,
    )


@contextlib.contextmanager
def without_model_defaults(model: Any) -> Iterator[None]:
    """Give ``model`` a blank ``generation_config`` for the block, then put its own back.

    ``generate()`` fills every knob its ``generation_config`` argument leaves unset from
    ``model.generation_config`` (min_p, typical_p, suppress_tokens, ...); with a blank one
    the decoding is exactly what :func:`decoding_config` says.
    """
    from transformers import GenerationConfig

    saved = model.generation_config
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = saved
