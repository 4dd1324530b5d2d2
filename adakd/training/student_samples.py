"""Student samples for the data regimes: seeded draws, generation, and training batches.

Every random draw comes from a seed derived from (run seed, step, micro-batch[, rank]) with
:func:`derive_seed`; sampling runs inside a forked RNG (the global CPU and CUDA RNG states are
saved and restored), so the training RNG stream is untouched. Generated batches follow the
conventions of ``adakd.data.tokenize.encode_example`` / ``collate`` (unshifted labels, -100 on the
prompt and on padding, right padding). Used by :mod:`adakd.training.regimes`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from adakd.evaluation.decoding import STOP_TOKENS, decoding_config, without_model_defaults

if TYPE_CHECKING:
    from transformers import PreTrainedModel

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- seeds and RNG
def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (e.g. ``(run_seed, step, micro, "gkd/coin")``).

    SHA-256 of the parts' ``str`` joined by '/': stable across processes and Python versions
    (unlike ``hash``), and distinct streams for distinct purposes, so the coin and the sampler
    of one step never share a seed.
    """
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def seeded_generator(*parts: Any) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def uniform_draw(generator: torch.Generator) -> float:
    """One draw u ~ U[0, 1) from ``generator``."""
    return float(torch.rand((), generator=generator, dtype=torch.float64))


@contextlib.contextmanager
def _sampling_context(model: torch.nn.Module, seed: int) -> Iterator[None]:
    """Eval mode, no grad and a private RNG stream for the block.

    Saves the CPU RNG and the RNG of the model's own accelerator, seeds both with ``seed``
    (``generate`` draws its samples from the global generators), and restores on exit the RNG
    states and the ``training`` flag of every submodule (so a partially frozen model comes
    back exactly as it was).
    """
    device = next(model.parameters()).device
    flags = [(m, m.training) for m in model.modules()]
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:
        fork = torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)
    try:
        with fork, torch.no_grad():
            torch.random.default_generator.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.default_generators[device.index or 0].manual_seed(seed)
            elif device.type == "mps":
                torch.mps.manual_seed(seed)
            model.eval()
            yield
    finally:
        for module, flag in flags:
            module.training = flag


# --------------------------------------------------------------------------- generation
def end_token_ids(tokenizer) -> list[int]:
    """Ids that end a response: the tokenizer's eos plus <|im_end|> / <|endoftext|> if known."""
    ids = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in STOP_TOKENS if t in vocab]
    if not ids:
        raise ValueError(
            "the tokenizer has no eos / <|im_end|> token: sampling would never stop early; pass eos_ids explicitly"
        )
    return list(dict.fromkeys(int(i) for i in ids))


def cut_at_end(tokens: Sequence[int], end_ids: Sequence[int]) -> list[int]:
    """``tokens`` up to and including the first end token (all of them if none occurs).

    The end token is kept, as ``encode_example`` keeps it on ground-truth responses, so the
    student is also trained to stop; what ``generate`` pads after it is dropped.
    """
    ends = set(int(e) for e in end_ids)
    for i, t in enumerate(tokens):
        if int(t) in ends:
            return [int(x) for x in tokens[: i + 1]]
    return [int(x) for x in tokens]


def sample_student_responses(
    student: PreTrainedModel,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator_seed: int,
    eos_ids: Sequence[int] | None = None,
    pad_id: int | None = None,
) -> list[list[int]]:
    """Sample one response per prompt from ``student``: y ~ q_θ(· | x), token by token.

    prompt_ids: B lists of token ids (each non-empty). Returns B lists of response ids, each
    cut after its first end token (kept; see :func:`cut_at_end`) and at most
    ``max_new_tokens`` long (a response that hits the bound has no end token).

    One batched ``generate`` call: prompts left-padded with ``pad_id`` (so every row
    continues from its own last prompt token), KV cache on, pure ancestral sampling from
    softmax(z / temperature) restricted to the top-p nucleus — no top-k (a model's
    generation_config default of top_k = 50 is switched off), no repetition penalty. The
    sampling temperature is separate from the distillation temperature.

    The student runs in eval mode (no dropout) and comes back in the mode it was in. The
    draws come from the global generators re-seeded with ``generator_seed`` inside a forked
    RNG, so the same seed and weights give the same samples and the caller's RNG stream is
    exactly as before the call. ``eos_ids`` default to :func:`end_token_ids`; ``pad_id`` to
    the tokenizer's pad id, else the first end id. A DDP wrapper is unwrapped (``.module``).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
    if not temperature > 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    prompts = [[int(t) for t in p] for p in prompt_ids]
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token to condition on")
    stop = list(eos_ids) if eos_ids else end_token_ids(tokenizer)
    if pad_id is None:
        pad_id = getattr(tokenizer, "pad_token_id", None)
    pad = int(pad_id) if pad_id is not None else stop[0]
    # DistributedDataParallel has no generate(). Any: transformers types generate()'s `self` as a
    # Protocol (for its own checker) that mypy finds no model class satisfying
    model: Any = getattr(student, "module", student)
    device = next(model.parameters()).device

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    config = decoding_config(max_new_tokens, greedy=False, stop=stop, pad=pad, temperature=temperature, top_p=top_p)
    with without_model_defaults(model), _sampling_context(model, generator_seed):
        out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
    return [cut_at_end(row, stop) for row in out[:, width:].tolist()]


# --------------------------------------------------------------------------- batches
def prompts_from_batch(batch: Mapping[str, torch.Tensor]) -> list[list[int]]:
    """The prompt of every row of a training batch: the valid tokens before its first label.

    A row's prompt is ``input_ids[t]`` for the positions t < first index with
    ``labels[t] != -100`` where ``attention_mask[t] == 1`` (works for right or left padding).
    A row whose response was truncated away (no label at all) keeps all its valid tokens
    as the prompt. A row whose labels start at position 0 has no prompt: ValueError.
    """
    ids = batch["input_ids"].tolist()
    labels = batch["labels"].tolist()
    mask = batch["attention_mask"].tolist() if "attention_mask" in batch else [[1] * len(r) for r in ids]
    prompts = []
    for row, (tokens, lab, valid) in enumerate(zip(ids, labels, mask, strict=True)):
        first = next((t for t, y in enumerate(lab) if y != IGNORE_INDEX), len(lab))
        prompt = [tok for tok, v in zip(tokens[:first], valid[:first], strict=True) if v]
        if not prompt:
            raise ValueError(
                f"batch row {row} has no prompt tokens before its first label: "
                "student responses need a prompt to condition on"
            )
        prompts.append(prompt)
    return prompts


def build_generated_batch(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int, max_length: int
) -> dict[str, torch.Tensor]:
    """A training batch from prompts and (generated) responses, as ``collate`` builds one.

    Row b: ``input_ids = prompt_b + response_b`` truncated to ``max_length`` (the response's
    tail is cut, as ``encode_example`` cuts a long ground-truth response); ``labels`` =
    -100 on the prompt, ``labels[t] = input_ids[t]`` on every response token (the end token
    included when the response has one), then right padding with ``pad_id`` and -100 labels
    and ``attention_mask`` 0. Returns CPU LongTensors ``input_ids``, ``attention_mask``,
    ``labels`` of shape [B, T], T = longest row.

    Labels are UNSHIFTED (HF style); the trainer scores ``logits[:, :-1]`` against
    ``next_token_targets(labels)``. Note: the public release's sampler writes generated labels
    unshifted against shifted logits (an off-by-one on every generated token); here a
    generated batch is indistinguishable in layout from a ground-truth one.
    """
    from adakd.data.tokenize import collate

    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if not prompt_ids:
        raise ValueError("build_generated_batch needs at least one row")
    encoded = []
    for prompt, response in zip(prompt_ids, response_ids, strict=True):
        prompt = [int(t) for t in prompt]
        if not prompt or len(prompt) > max_length:
            raise ValueError(f"prompt length {len(prompt)} must be in [1, max_length={max_length}]")
        response = [int(t) for t in response][: max_length - len(prompt)]
        encoded.append(
            {
                "input_ids": prompt + response,
                "labels": [IGNORE_INDEX] * len(prompt) + response,
                "prompt_length": len(prompt),
            }
        )
    return collate(encoded, pad_id)


def on_device_of(batch: dict[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` moved to the device of ``like`` (the ground-truth batch it replaces)."""
    device = like["input_ids"].device
    return {k: v.to(device) for k, v in batch.items()}
