"""Prompt formatting, tokenisation with label masking, and batching.

    prompt  = format_prompt(tokenizer, example)            # chat template, else the Alpaca template
    encoded = encode_example(tokenizer, example, 256, 512)  # input_ids, labels, prompt_length
    batch   = collate([encoded, ...], tokenizer.pad_token_id)
    targets, mask = next_token_targets(batch["labels"])     # score logits[:, :-1] against targets

One sequence is ``prompt tokens + response tokens + end token``:

    input_ids  = [p_0 … p_{P-1}, r_0 … r_{R-1}, eos]
    labels     = [-100 … -100,   r_0 … r_{R-1}, eos]      (HF style: unshifted, -100 = ignore)

Choices, and why:
- The prompt is tokenised without added special tokens when a chat template renders it: the
  template already starts with its own bos (SmolLM2: ``<|im_start|>`` = id 1), and letting the
  tokenizer add another would double it. Without a chat template (GPT-2 style) a bos is
  prefixed only if the tokenizer itself adds one (``add_bos_token``, e.g. Llama-2).
- Prompt and response are tokenised separately and concatenated: this is exactly what the model
  sees at generation time (it continues the prompt's ids).
- The end token is ``tokenizer.eos_token_id`` (SmolLM2: ``<|im_end|>`` = 2, the end-of-turn of
  its ChatML template; GPT-2: ``<|endoftext|>``), so the student learns to stop.
- Too long a prompt is shortened inside the template, never by cutting the template itself
  (cutting its head loses the turn markers, cutting its tail loses "assistant\\n"): the end of
  the context goes first, then the end of the instruction. The instruction is kept whole when
  it fits, since it says what to do.
- Too long a response is cut to fit ``max_length`` and then gets no end token: teaching the
  student to stop in mid-sentence would be wrong.
"""

from __future__ import annotations

import dataclasses

import torch

from adakd.data.instructions import DataError, Example

IGNORE_INDEX = -100

# The templates of the paper's code base (MiniLLM / DistiLLM data processing, after Alpaca).
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def user_message(example: Example) -> str:
    """The user turn of a chat prompt: the instruction, then a blank line and the context if any."""
    return f"{example.instruction}\n\n{example.context}" if example.context else example.instruction


def uses_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer, example: Example) -> str:
    """The prompt text: the tokenizer's chat template with one user turn and the assistant
    header (``add_generation_prompt=True``), or the Alpaca template when there is none."""
    if uses_chat_template(tokenizer):
        messages = [{"role": "user", "content": user_message(example)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if example.context:
        return ALPACA_PROMPT_WITH_INPUT.format(instruction=example.instruction, input=example.context)
    return ALPACA_PROMPT.format(instruction=example.instruction)


def end_token_id(tokenizer) -> int:
    """The token appended to every response: ``tokenizer.eos_token_id``."""
    if tokenizer.eos_token_id is None:
        raise DataError(
            "the tokenizer has no eos token, so the end of a response cannot be marked; set tokenizer.eos_token"
        )
    return int(tokenizer.eos_token_id)


def encode_prompt(tokenizer, example: Example, max_prompt_length: int) -> list[int]:
    """Prompt token ids, at most ``max_prompt_length`` (shortened inside the template).

    Use this for generation too, so training and evaluation prompts are identical.
    """
    return fit_prompt(tokenizer, example, max_prompt_length)[1]


def fit_prompt(tokenizer, example: Example, max_prompt_length: int) -> tuple[Example, list[int]]:
    """(the example with its context, then its instruction, shortened until the formatted
    prompt fits ``max_prompt_length`` tokens; its prompt ids): the example as training saw it,
    whose prompt encodes to exactly these ids at any larger limit. DataError when even an
    empty instruction does not fit."""
    if max_prompt_length < 1:
        raise ValueError(f"max_prompt_length must be >= 1, got {max_prompt_length}")
    ids = _prompt_ids(tokenizer, example)
    for field in ("context", "instruction"):
        pieces = tokenizer(getattr(example, field), add_special_tokens=False).input_ids
        while len(ids) > max_prompt_length and pieces:
            # Drop as many tokens as we are over; re-encoding the decoded text can merge
            # differently, so loop until it fits (each round drops at least one token).
            pieces = pieces[: max(0, len(pieces) - (len(ids) - max_prompt_length))]
            example = dataclasses.replace(example, **{field: tokenizer.decode(pieces)})
            ids = _prompt_ids(tokenizer, example)
    if len(ids) > max_prompt_length or not example.instruction.strip():
        template = len(_prompt_ids(tokenizer, dataclasses.replace(example, instruction="", context="")))
        raise DataError(
            f"max_prompt_length={max_prompt_length} leaves no room for the instruction: the prompt "
            f"template alone takes {template} tokens; raise max_prompt_length"
        )
    return example, ids


def encode_example(tokenizer, example: Example, max_prompt_length: int, max_length: int) -> dict:
    """Token ids and labels of one example (see the module docstring for the layout).

    Returns ``{"input_ids": list[int], "labels": list[int], "prompt_length": int}`` with
    ``len(input_ids) <= max_length``; ``labels[t] == input_ids[t]`` on response tokens (incl.
    the end token) and ``-100`` on the prompt. Raises DataError when the prompt leaves no room
    for a single response token.
    """
    prompt = encode_prompt(tokenizer, example, max_prompt_length)
    room = max_length - len(prompt)
    if room < 1:
        raise DataError(
            f"the prompt takes {len(prompt)} tokens, leaving no room for a response within "
            f"max_length={max_length}; make max_length larger than max_prompt_length "
            f"(now {max_prompt_length}). Instruction: {example.instruction[:60]!r}"
        )
    response = tokenizer(example.response, add_special_tokens=False).input_ids
    response = response + [end_token_id(tokenizer)] if len(response) < room else response[:room]
    return {
        "input_ids": prompt + response,
        "labels": [IGNORE_INDEX] * len(prompt) + response,
        "prompt_length": len(prompt),
    }


def collate(encoded: list[dict], pad_id: int) -> dict:
    """Right-pad encoded examples into LongTensors ``input_ids``, ``attention_mask``, ``labels``
    of shape [B, T] (T = longest sequence); padding has mask 0 and label -100."""
    if not encoded:
        raise ValueError("collate needs at least one encoded example")
    if pad_id is None:
        raise ValueError("pad_id is None: set tokenizer.pad_token (e.g. to the eos token)")
    width = max(len(e["input_ids"]) for e in encoded)
    input_ids = torch.full((len(encoded), width), int(pad_id), dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e["input_ids"])
        if len(e["labels"]) != n:
            raise ValueError(f"example {row}: {n} input ids but {len(e['labels'])} labels")
        input_ids[row, :n] = torch.tensor(e["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = 1
        labels[row, :n] = torch.tensor(e["labels"], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def next_token_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift HF-style labels [B, T] for next-token scoring: ``logits[:, :-1]`` predict ``targets``.

    targets[b, t] = labels[b, t+1]; mask[b, t] = labels[b, t+1] != -100 (bool, [B, T-1]).
    Masked targets are set to 0 so they can index a vocabulary (gather) safely; always apply
    ``mask`` - never read a masked target.
    """
    shifted = labels[:, 1:]
    mask = shifted != IGNORE_INDEX
    return shifted.masked_fill(~mask, 0), mask


def _prompt_ids(tokenizer, example: Example) -> list[int]:
    ids = tokenizer(format_prompt(tokenizer, example), add_special_tokens=False).input_ids
    if (
        not uses_chat_template(tokenizer)
        and getattr(tokenizer, "add_bos_token", False)
        and tokenizer.bos_token_id is not None
    ):
        ids = [tokenizer.bos_token_id] + ids
    return ids
