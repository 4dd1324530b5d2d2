"""Prompt formatting, label masking (hand-checked ids), truncation, collate and the shift."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from adakd.data.instructions import DataError, Example
from adakd.data.tokenize import collate, encode_example, encode_prompt, format_prompt, next_token_targets
from adakd.models.loading import load_tokenizer

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# The SmolLM2 pieces of the ChatML prompt, written out by hand (Ġ = a leading space, Ċ = "\n").
SYSTEM_PIECES = [
    "<|im_start|>",
    "system",
    "Ċ",
    "You",
    "Ġare",
    "Ġa",
    "Ġhelpful",
    "ĠAI",
    "Ġassistant",
    "Ġnamed",
    "ĠSm",
    "ol",
    "LM",
    ",",
    "Ġtrained",
    "Ġby",
    "ĠH",
    "ugging",
    "ĠFace",
    "<|im_end|>",
    "Ċ",
]
ASSISTANT_PIECES = ["<|im_start|>", "ass", "istant", "Ċ"]


def ids_of(tokenizer, pieces):
    ids = tokenizer.convert_tokens_to_ids(pieces)
    assert tokenizer.unk_token_id not in ids, pieces
    return ids


def test_special_ids_are_the_documented_ones(tokenizer):
    assert ids_of(tokenizer, ["<|im_start|>", "<|im_end|>", "Ċ"]) == [1, 2, 198]


def test_chat_prompt_text(tokenizer):
    ex = Example("Summarise this.", "Cats purr when happy.", "They purr.")
    assert format_prompt(tokenizer, ex) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nSummarise this.\n\nCats purr when happy.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_label_masking_is_exact_on_a_hand_checked_example(tokenizer):
    encoded = encode_example(tokenizer, Example("Hi", "", "Hello there."), max_prompt_length=64, max_length=128)
    prompt = ids_of(
        tokenizer, SYSTEM_PIECES + ["<|im_start|>", "user", "Ċ", "Hi", "<|im_end|>", "Ċ"] + ASSISTANT_PIECES
    )
    response = ids_of(tokenizer, ["Hello", "Ġthere", "."]) + [2]  # + <|im_end|>, the end of the turn
    assert len(prompt) == 31
    assert encoded["input_ids"] == prompt + response
    assert encoded["labels"] == [-100] * 31 + response
    assert encoded["prompt_length"] == 31
    assert encoded["input_ids"][:2] == [1, 9690]  # one bos, then "system": no doubled <|im_start|>
    assert encoded["input_ids"].count(1) == 3  # system, user, assistant turns


def test_alpaca_template_without_a_chat_template(teacher_dir):
    plain = load_tokenizer(teacher_dir)
    plain.chat_template = None  # behaves like GPT-2: no chat template
    assert format_prompt(plain, Example("Name a colour.")) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )
    assert format_prompt(plain, Example("Translate.", "chat")) == (
        "Below is an instruction that describes a task, paired with an input that provides further "
        "context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\nchat\n\n### Response:\n"
    )
    encoded = encode_example(plain, Example("Name a colour.", "", "Red."), 64, 128)
    tail = ids_of(plain, ["###", "ĠResponse", ":", "Ċ", "Red", "."]) + [2]
    assert encoded["input_ids"][-len(tail) :] == tail
    assert encoded["input_ids"][0] != 1  # this tokenizer adds no bos
    assert encoded["labels"][-3:] == tail[-3:] and set(encoded["labels"][:-3]) == {-100}
    plain.add_bos_token = True  # a tokenizer that adds a bos itself (Llama-2 style) gets exactly one
    with_bos = encode_example(plain, Example("Name a colour.", "", "Red."), 64, 128)["input_ids"]
    assert with_bos == [1] + encoded["input_ids"]


def test_a_long_response_is_cut_without_an_end_token(tokenizer):
    ex = Example("Hi", "", "Hello there, my friend.")
    encoded = encode_example(tokenizer, ex, max_prompt_length=64, max_length=33)  # room for 2 tokens
    assert encoded["input_ids"][31:] == ids_of(tokenizer, ["Hello", "Ġthere"])
    assert encoded["labels"][31:] == encoded["input_ids"][31:] and len(encoded["input_ids"]) == 33
    # exactly enough room: the end token fits
    fits = encode_example(tokenizer, Example("Hi", "", "Hello there."), 64, 35)
    assert fits["input_ids"][-1] == 2 and len(fits["input_ids"]) == 35


def test_a_long_prompt_is_shortened_inside_the_template(tokenizer):
    ex = Example("Summarise the text.", "Lorem ipsum dolor sit amet. " * 40, "Ok.")
    ids = encode_prompt(tokenizer, ex, 60)
    assert len(ids) <= 60
    assert ids[:21] == ids_of(tokenizer, SYSTEM_PIECES)  # the template head is intact
    assert ids[-4:] == ids_of(tokenizer, ASSISTANT_PIECES)  # and so is its tail
    assert "user\nSummarise the text.\n\nLorem ipsum" in tokenizer.decode(ids)  # context cut first
    only_instruction = encode_prompt(tokenizer, Example("word " * 100, "context", "x"), 40)
    assert len(only_instruction) <= 40 and tokenizer.decode(only_instruction).count("word") >= 3


def test_no_room_for_a_response_or_instruction_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match=r"no room for a response within max_length=31"):
        encode_example(tokenizer, Example("Hi", "", "Hello"), max_prompt_length=64, max_length=31)
    with pytest.raises(DataError, match=r"max_prompt_length=20 .* template alone takes 30 tokens"):
        encode_example(tokenizer, Example("Hi", "", "Hello"), max_prompt_length=20, max_length=64)


@settings(max_examples=25, deadline=None)
@given(
    instruction=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80).filter(
        str.strip
    ),
    response=st.text(min_size=1, max_size=80),
    max_prompt=st.integers(34, 80),
    extra=st.integers(1, 40),
)
def test_encoding_invariants(tokenizer, instruction, response, max_prompt, extra):
    encoded = encode_example(tokenizer, Example(instruction, "", response), max_prompt, max_prompt + extra)
    ids, labels, p = encoded["input_ids"], encoded["labels"], encoded["prompt_length"]
    assert len(ids) == len(labels) <= max_prompt + extra and p <= max_prompt
    assert labels[:p] == [-100] * p and labels[p:] == ids[p:] and len(ids) > p


def test_collate_pads_right_with_masks():
    batch = collate(
        [
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "prompt_length": 1},
            {"input_ids": [8, 9], "labels": [-100, 9], "prompt_length": 1},
        ],
        pad_id=2,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, 9, -100]]
    assert all(t.dtype == torch.long for t in batch.values())
    targets, mask = next_token_targets(batch["labels"])
    assert targets.tolist() == [[6, 7], [9, 0]]
    assert mask.tolist() == [[True, True], [True, False]] and mask.dtype == torch.bool
    with pytest.raises(ValueError):
        collate([], pad_id=2)


def test_shift_matches_the_hf_loss(tiny_pair, tokenizer):
    examples = [Example("Hi", "", "Hello there."), Example("Name a fruit.", "", "An apple, or a pear.")]
    batch = collate([encode_example(tokenizer, e, 64, 128) for e in examples], tokenizer.pad_token_id)
    model = tiny_pair.teacher
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    targets, mask = next_token_targets(batch["labels"])
    logits = out.logits[:, :-1][mask]
    ours = F.cross_entropy(logits.float(), targets[mask])
    assert torch.allclose(ours, out.loss, atol=1e-5)
    # scored positions = response pieces + end token of each row, written out by hand
    apple = ids_of(tokenizer, ["An", "Ġapple", ",", "Ġor", "Ġa", "Ġpear", "."])
    assert targets[1][mask[1]].tolist() == apple + [2]
    assert int(mask.sum()) == (3 + 1) + (7 + 1)
