"""Decoding with every knob explicit: one protocol for every ``generate()`` call of the package.

A model's own ``generation_config`` (top_k = 50, repetition penalties, min_p, ...) must not
silently change how replies are decoded. Two pieces make sure of that, used by evaluation
(:mod:`adakd.evaluation.evaluate`), student sampling (:mod:`adakd.training.student_samples`) and the token
explorer (:mod:`analysis.explorer`):

    config = decoding_config(max_new_tokens, greedy=False, stop=stop, pad=pad, temperature=1.0, top_p=1.0)
    with without_model_defaults(model):
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)

Evaluation samples through :func:`row_seeded_sampling` instead: the same distribution, but each
row draws from its own seeded generator, so a reply depends on its (seed, prompt) and not on
which other rows share its batch (rows of several seeds can then be generated in one batch).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import GenerationConfig, LogitsProcessorList

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


# --------------------------------------------------------------------------- row-seeded sampling
def row_seed(seed: int, index: int) -> int:
    """The generator seed of prompt ``index`` under generation seed ``seed``: the first 63 bits of
    sha256("seed/index"), so distinct (seed, index) pairs get unrelated streams."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{index}".encode()).digest()[:8], "big") >> 1


class RowSeededGumbel:
    """A logits processor that makes argmax decoding an exact sample, with one generator per row.

    Gumbel-max: with u_v ~ U(0, 1) i.i.d. and g_v = −log(−log u_v),
    argmax_v (z_v + g_v) is distributed as softmax(z) (entries of −inf, e.g. outside a top-p
    nucleus, are never drawn). Row b takes its [V] uniforms from its own generator seeded with
    ``row_seeds[b]``, one vector per decoding step, so its reply depends on its seed and its
    model inputs only: not on the batch size or on which other rows are decoded beside it.
    Scores [B, V] → scores + g [B, V] (float32).
    """

    def __init__(self, row_seeds: Sequence[int]):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in row_seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"{scores.shape[0]} rows but {len(self.generators)} row seeds")
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators])
        # u = 0 would give an infinite key; the smallest normal float keeps it finite
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(torch.float32).tiny)))
        return scores.float() + gumbel.to(scores.device)


def row_seeded_sampling(
    max_new_tokens: int,
    *,
    row_seeds: Sequence[int],
    stop: Sequence[int],
    pad: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> tuple[GenerationConfig, LogitsProcessorList]:
    """``(config, processors)`` for ``generate(..., generation_config=config,
    logits_processor=processors)``: ancestral sampling from softmax(z / temperature) restricted
    to the top-p nucleus (top-k off), like :func:`decoding_config` with ``greedy=False``, but
    drawn row by row with :class:`RowSeededGumbel` (``row_seeds``: one per batch row).
    """
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    if temperature <= 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    processors.append(RowSeededGumbel(row_seeds))
    # argmax over the perturbed scores is the draw; the config itself decodes greedily
    return decoding_config(max_new_tokens, greedy=True, stop=stop, pad=pad), processors
